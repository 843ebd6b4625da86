"""Supervised multimodal classifier: encoders -> fusion -> one linear head per task.

    batch ──> encoder per modality ──> EncoderOutput (tokens, pooled, mask)
          ──> presence flags (batch '<m>_present', training-time modality dropout)
          ──> fusion (by name; see cmjax/models/fusion) ──> [B, width]
          ──> head per task ──> {'logits/<task>': [B, classes]}

Decision-level fusion ('late') produces logits itself, one fusion per task.

A missing modality (flag False) is handled by the `missing` strategy:
  'mask'     the fusion ignores it (every fusion method supports this);
  'learned'  a learned "missing" embedding stands in for its pooled vector
             (and as its one valid token);
  'mean'     the running mean of its pooled vector over training examples
             stands in (kept in the 'imputation' collection, like BatchNorm
             statistics);
  'predict'  a small MLP predicts its pooled vector from the other modalities'
             ones; trained on the examples that have it, with the squared
             error added to the loss ('aux_loss'), inputs and targets with
             stopped gradients so the encoders are not pulled towards it.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from cmjax.data.spec import ElementSpec
from cmjax.models.contrastive import validate_batch
from cmjax.models.encoders import MODALITY_INPUTS, build_encoder, complete_from_data
from cmjax.models.fusion import get_fusion_cls
from cmjax.models.fusion.common import zero_missing
from cmjax.models.layers import Dtype
from cmjax.models.registry import input_modalities, register

MISSING_STRATEGIES = ("mask", "learned", "mean", "predict")


def modality_dropout(rng: jax.Array, present: jax.Array, rate: float) -> jax.Array:
  """Drops each present modality of each example with probability `rate`.

  present: bool `[B, M]`. An example never loses all its modalities: if every
  one would be dropped, one present modality chosen at random is kept.
  Returns bool `[B, M]`.
  """
  drop_rng, keep_rng = jax.random.split(rng)
  keep = present & ~jax.random.bernoulli(drop_rng, rate, present.shape)
  # Random scores, -inf on absent modalities: argmax picks a present one.
  scores = jnp.where(present, jax.random.uniform(keep_rng, present.shape), -jnp.inf)
  rescue = jax.nn.one_hot(jnp.argmax(scores, axis=1), present.shape[1], dtype=jnp.bool_)
  return jnp.where(jnp.any(keep, axis=1, keepdims=True), keep, rescue & present)


@register("fusion_classifier")
class FusionClassifier(nn.Module):
  """Encoders + fusion + per-task linear heads.

  Attributes:
    modalities: the modalities used, in a fixed order (default: those of `data`).
    data: the dataset's `ElementSpec` (completes the encoders' settings).
    image, text, audio, video: encoder configs ('name' + kwargs), as in the
      contrastive model.
    fusion: fusion config: 'name' (default 'concat') + the method's kwargs
      (width, depth, ...).
    heads: {task: outputs} (classes, or 1 for a regression); the outputs of task
      t are 'logits/t'. Default: every target of `data` (`ElementSpec.heads`).
    modality_dropout: training-time probability of dropping each modality
      of each example (never all of them).
    missing: how a missing modality is handled: 'mask', 'learned', 'mean' or
      'predict' (see the module docstring).
    imputation_momentum: running-mean momentum of the 'mean' strategy.
    dtype: compute dtype.
  """

  modalities: tuple[str, ...] | None = None
  data: ElementSpec | None = None
  image: dict | None = None
  text: dict | None = None
  audio: dict | None = None
  video: dict | None = None
  fusion: dict | None = None
  heads: dict | None = None
  modality_dropout: float = 0.0
  missing: str = "mask"
  imputation_momentum: float = 0.99
  dtype: Dtype = jnp.float32

  def setup(self):
    self.used = input_modalities(self)
    if self.missing not in MISSING_STRATEGIES:
      raise ValueError(
        f"config.model.missing={self.missing!r}; expected one of {MISSING_STRATEGIES}"
      )
    self.imputer = MissingModalityImputer(
      tuple(self.used), self.missing, self.imputation_momentum, self.dtype, name="imputer"
    )
    unknown = set(self.used) - set(MODALITY_INPUTS)
    if unknown:
      raise ValueError(f"unknown modalities {sorted(unknown)}; known: {sorted(MODALITY_INPUTS)}")
    self.head_sizes = dict(self.heads or (self.data.heads() if self.data else {}))
    if not self.head_sizes:
      raise ValueError(
        "the model has no heads: give config.model.heads = {task: outputs}, or a dataset "
        "with targets (config.data.labels)"
      )
    self.encoders = {
      m: build_encoder(
        m, complete_from_data(m, getattr(self, m), self.data), dtype=self.dtype, name=f"{m}_encoder"
      )
      for m in self.used
    }
    kw = dict(self.fusion or {})
    cls = get_fusion_cls(kw.pop("name", "concat"))
    kw.update(modalities=tuple(self.used), dtype=self.dtype)
    if cls.outputs_logits:
      self.fusions = {
        t: cls(**kw, num_classes=n, name=f"fusion_{t}") for t, n in self.head_sizes.items()
      }
      self.head_layers = {}
    else:
      self.fusions = {"shared": cls(**kw, name="fusion")}
      self.head_layers = {
        t: nn.Dense(n, dtype=self.dtype, name=f"head_{t}") for t, n in self.head_sizes.items()
      }

  def presence(self, batch: dict, train: bool) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """({modality: bool `[B]`} after modality dropout, {...} as the batch gives them)."""
    batch_size = batch[MODALITY_INPUTS[self.used[0]][0]].shape[0]
    given = jnp.stack(
      [
        jnp.asarray(batch.get(f"{m}_present", jnp.ones((batch_size,), bool))).astype(jnp.bool_)
        for m in self.used
      ],
      axis=1,
    )
    flags = given
    if train and self.modality_dropout > 0:
      flags = modality_dropout(self.make_rng("dropout"), flags, self.modality_dropout)
    return (
      {m: flags[:, i] for i, m in enumerate(self.used)},
      {m: given[:, i] for i, m in enumerate(self.used)},
    )

  def __call__(self, batch: dict, *, train: bool = False) -> dict:
    """Returns {'logits/<task>': float32 `[B, classes]`, 'present/<m>': bool `[B]`,
    and 'aux_loss' (scalar) with the 'predict' strategy}."""
    missing = [m for m in self.used if MODALITY_INPUTS[m][0] not in batch]
    if missing:
      raise KeyError(
        f"batch lacks {missing}; this classifier uses {list(self.used)}; "
        'mark a missing modality with "<modality>_present" = False instead'
      )
    validate_batch(batch, tuple(self.used))
    present, given = self.presence(batch, train)
    features = {
      m: self.encoders[m](*[batch[k] for k in MODALITY_INPUTS[m]], train=train) for m in self.used
    }
    out = {f"present/{m}": p for m, p in present.items()}
    features, fusion_present, aux = self.imputer(features, present, given, train)
    if self.missing == "predict":
      out["aux_loss"] = aux
    if self.head_layers:
      fused = self.fusions["shared"](features, fusion_present, train=train)
      for t, head in self.head_layers.items():
        out[f"logits/{t}"] = head(fused).astype(jnp.float32)
    else:
      for t, fusion in self.fusions.items():
        out[f"logits/{t}"] = fusion(features, fusion_present, train=train).astype(jnp.float32)
    return out


class MissingModalityImputer(nn.Module):
  """Stand-ins for missing modalities (strategy `missing`; see the module docstring)."""

  modalities: tuple[str, ...]
  missing: str = "mask"
  imputation_momentum: float = 0.99
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(
    self, features: dict, present: dict, given: dict, train: bool
  ) -> tuple[dict, dict | None, jax.Array]:
    """Applies the `missing` strategy.

    Args:
      features: {modality: EncoderOutput}.
      present: {modality: bool `[B]`}, after modality dropout.
      given: {modality: bool `[B]`}, as the batch had them (regression targets
        of 'predict' and the running mean of 'mean' use these rows).
      train: update the running means.

    Returns (features with stand-ins where missing, the presence flags the
    fusion should see (None: all present), auxiliary loss scalar).
    """
    aux = jnp.zeros((), jnp.float32)
    if self.missing == "mask":
      return features, present, aux
    out = {}
    for m in self.modalities:
      f = features[m]
      dim = f.pooled.shape[-1]
      if self.missing == "learned":
        stand_in = jnp.broadcast_to(
          self.param(f"{m}_missing_embedding", nn.initializers.normal(0.02), (dim,)), f.pooled.shape
        )
      elif self.missing == "mean":
        mean = self.variable("imputation", f"{m}_mean", jnp.zeros, (dim,), jnp.float32)
        if train and not self.is_initializing():
          w = given[m].astype(jnp.float32)[:, None]
          batch_mean = jnp.sum(jax.lax.stop_gradient(f.pooled) * w, 0) / jnp.maximum(
            jnp.sum(w), 1.0
          )
          mom = jnp.where(jnp.any(given[m]), self.imputation_momentum, 1.0)
          mean.value = mom * mean.value + (1 - mom) * batch_mean
        stand_in = jnp.broadcast_to(mean.value, f.pooled.shape)
      else:  # predict
        others = [o for o in self.modalities if o != m]
        inputs = jnp.concatenate(
          [jax.lax.stop_gradient(zero_missing(features[o].pooled, present[o])) for o in others]
          + [present[o][:, None].astype(f.pooled.dtype) for o in others],
          axis=-1,
        )
        h = nn.gelu(nn.Dense(2 * dim, dtype=self.dtype, name=f"{m}_predictor_hidden")(inputs))
        stand_in = nn.Dense(dim, dtype=self.dtype, name=f"{m}_predictor_out")(h)
        target = jax.lax.stop_gradient(f.pooled).astype(jnp.float32)
        err = jnp.mean(jnp.square(stand_in.astype(jnp.float32) - target), axis=-1)
        w = given[m].astype(jnp.float32)
        aux = aux + jnp.sum(err * w) / jnp.maximum(jnp.sum(w), 1.0)
      stand_in = stand_in.astype(f.pooled.dtype)
      p = present[m]
      pooled = jnp.where(p[:, None], f.pooled, stand_in)
      # The stand-in is also the one valid token of a missing modality.
      first = jnp.arange(f.tokens.shape[1])[None, :] == 0
      tokens = jnp.where(
        p[:, None, None], f.tokens, jnp.where(first[..., None], stand_in[:, None, :], 0.0)
      )
      mask = jnp.where(p[:, None], f.mask, first)
      out[m] = f._replace(tokens=tokens, pooled=pooled, mask=mask)
    return out, None, aux
