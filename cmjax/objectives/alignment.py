"""'alignment': paired embeddings pulled together, with an optional anti-collapse term.

  c.objectives = dict(align=dict(type="alignment", regularizer="vicreg"))

For every pair (a, b) of the model's modality embeddings the term is

  invariance_weight · mean (a - b)²
  + [regularizer 'vicreg']  variance_weight · (v(a) + v(b)) / 2
                            + covariance_weight · (c(a) + c(b))
  + [regularizer 'barlow']  barlow_weight · BarlowTwins(a, b)

summed over pairs (`cmjax/alignment_losses.py` has the terms; with the default
weights a pair's term is the loss of VICReg's, resp. Barlow Twins', reference
code). Rows lacking
either modality (`<modality>_present` False) take no part. Combine it with
'clip' or 'siglip' as further weighted terms of `config.objectives`.

Options of the entry (defaults depend on the regularizer, as in the papers):
  modalities         embeddings to pair (default: every modality the model outputs)
  regularizer        'none' (the plain alignment, which collapses), 'vicreg', 'barlow'
  invariance_weight  1.0 ('none'), 25.0 ('vicreg'), 0.0 ('barlow': its diagonal
                     term aligns; its loss ignores scale, so an added squared
                     distance only shrinks the embeddings)
  variance_weight    25.0, covariance_weight 1.0, gamma 1.0 (target std) ('vicreg')
  barlow_weight      1.0, barlow_lambda 5e-3 ('barlow')

Metrics: 'invariance/<a>_<b>', 'variance/<a>_<b>', 'covariance/<a>_<b>',
'barlow/<a>_<b>', and 'std/<m>' (mean per-dimension standard deviation of each
embedding over the batch: near 0 means collapse).

VICReg's statistics are per-dimension over the batch: use the model's
unnormalised embeddings (`config.model.normalize=False`); on unit vectors no
dimension can reach a standard deviation of 1.
"""

from __future__ import annotations

import itertools

import jax.numpy as jnp

from cmjax import alignment_losses as al
from cmjax.data import spec as spec_lib
from cmjax.objectives import base

REGULARIZERS = {
  "none": dict(invariance_weight=1.0),
  "vicreg": dict(invariance_weight=25.0, variance_weight=25.0, covariance_weight=1.0, gamma=1.0),
  "barlow": dict(invariance_weight=0.0, barlow_weight=1.0, barlow_lambda=5e-3),
}
_OPTIONS = {"type", "weight", "modalities", "regularizer"}


@base.register("alignment")
class AlignmentObjective(base.Objective):
  """Squared distance between paired embeddings (+ VICReg or Barlow Twins terms)."""

  def __init__(self, entry, ctx, where=""):
    super().__init__(entry, ctx, where)
    self.regularizer = entry.get("regularizer", "none")
    if self.regularizer not in REGULARIZERS:
      raise ValueError(
        f"{self.where}.regularizer={self.regularizer!r}; expected one of {sorted(REGULARIZERS)}"
      )
    defaults = REGULARIZERS[self.regularizer]
    unknown = set(entry) - _OPTIONS - set(defaults)
    if unknown:
      raise ValueError(
        f"{self.where} has unknown keys {sorted(unknown)}; with regularizer="
        f"{self.regularizer!r} it takes {sorted(_OPTIONS | set(defaults))}."
      )
    self.options = {k: float(entry.get(k, v)) for k, v in defaults.items()}
    self.modalities = tuple(entry.get("modalities") or spec_lib.MODALITIES)

  def check(self, output_keys, batch_keys) -> None:
    super().check(output_keys, batch_keys)
    if len([m for m in self.modalities if m in set(output_keys)]) < 2:
      raise ValueError(
        f"{self.where} (type 'alignment') needs the embeddings of at least two "
        f"modalities among {list(self.modalities)}; the model outputs {sorted(output_keys)}."
      )

  def __call__(self, outputs, batch, step):
    del batch, step
    o = self.options
    present = [m for m in self.modalities if m in outputs]
    metrics, total = {}, 0.0
    for m in present:
      metrics[f"std/{m}"] = al.embedding_std(outputs[m], _rows(outputs, (m,)))
    for a, b in itertools.combinations(present, 2):
      x, y, w = outputs[a], outputs[b], _rows(outputs, (a, b))
      pair = f"{a}_{b}"
      metrics[f"invariance/{pair}"] = al.invariance(x, y, w)
      loss = o["invariance_weight"] * metrics[f"invariance/{pair}"]
      if self.regularizer == "vicreg":
        var = 0.5 * (al.vicreg_variance(x, w, o["gamma"]) + al.vicreg_variance(y, w, o["gamma"]))
        cov = al.vicreg_covariance(x, w) + al.vicreg_covariance(y, w)
        metrics[f"variance/{pair}"], metrics[f"covariance/{pair}"] = var, cov
        loss = loss + o["variance_weight"] * var + o["covariance_weight"] * cov
      elif self.regularizer == "barlow":
        metrics[f"barlow/{pair}"] = al.barlow_twins(x, y, w, o["barlow_lambda"])
        loss = loss + o["barlow_weight"] * metrics[f"barlow/{pair}"]
      total = total + loss
    return total, metrics


def _rows(outputs, modalities) -> jnp.ndarray | None:
  """float `[B]`: 1 where every one of `modalities` is present (None: all rows)."""
  flags = [outputs[f"{m}_present"] for m in modalities if f"{m}_present" in outputs]
  if not flags:
    return None
  return jnp.all(jnp.stack(flags).astype(jnp.bool_), axis=0).astype(jnp.float32)
