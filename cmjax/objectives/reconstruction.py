"""'reconstruction': the cross-modal autoencoder's errors, per direction, weighted.

  c.objectives = dict(recon=dict(type="reconstruction", cross_weight=1.0, kl_weight=1e-3))

For each model output 'recon/<s>_to_<t>' (cmjax/models/autoencoder.py), over
the rows where both s and t are present ('recon_present/<s>_to_<t>'):

  image  mean squared error of the pixels, in [0, 1]
  text   next-token cross-entropy per caption token (nats)
  audio  mean squared error of the normalised log-mel frames (valid frames)

weighted by `self_weight` (s == t), `cross_weight` (translation) or
`joint_weight` (s = 'joint', the product of experts), and by
`modality_weights[t]` (default 1), summed; plus `kl_weight` x 'kl' when the
model outputs it. Metrics: 'error/<s>_to_<t>', 'text_accuracy/<s>_to_text',
'kl'. `direction_errors` is what the 'reconstruction' evaluator reports too.
"""

from __future__ import annotations

import jax.numpy as jnp

from cmjax import sequence_losses
from cmjax.objectives import base

_OPTIONS = ("self_weight", "cross_weight", "joint_weight", "kl_weight", "modality_weights")


def _masked_mse(pred, target, weights):
  """Σ w (pred - target)² / Σ w, `weights` broadcast over the trailing axes."""
  err = (pred.astype(jnp.float32) - target.astype(jnp.float32)) ** 2
  w = jnp.broadcast_to(weights.reshape(weights.shape + (1,) * (err.ndim - weights.ndim)), err.shape)
  return jnp.sum(w * err) / jnp.maximum(jnp.sum(w), 1.0)


def direction_errors(outputs: dict, batch: dict) -> dict:
  """{'error/<s>_to_<t>': scalar, 'text_accuracy/<s>_to_text': scalar} of every
  reconstruction the model output, over the rows where it counts."""
  out = {}
  for key, pred in outputs.items():
    if not key.startswith("recon/"):
      continue
    direction = key[len("recon/") :]
    target = direction.rsplit("_to_", 1)[1]
    rows = outputs[f"recon_present/{direction}"].astype(jnp.float32)
    if target == "image":
      out[f"error/{direction}"] = _masked_mse(
        pred, batch["image"].astype(jnp.float32) / 255.0, rows
      )
    elif target == "audio":
      weights = outputs["recon_mask/audio"].astype(jnp.float32) * rows[:, None]
      out[f"error/{direction}"] = _masked_mse(pred, outputs["recon_target/audio"], weights)
    else:
      weights = batch["text_mask"][:, 1:].astype(jnp.float32) * rows[:, None]
      loss, m = sequence_losses.token_cross_entropy(pred, batch["text"][:, 1:], weights)
      out[f"error/{direction}"] = loss
      out[f"text_accuracy/{direction}"] = m["token_accuracy"]
  return out


@base.register("reconstruction")
class ReconstructionObjective(base.Objective):
  needs_outputs = ()

  def __init__(self, entry, ctx, where=""):
    super().__init__(entry, ctx, where)
    base.check_keys(self.where, entry, _OPTIONS)
    self.weights = dict(
      self=float(entry.get("self_weight", 1.0)),
      cross=float(entry.get("cross_weight", 1.0)),
      joint=float(entry.get("joint_weight", 1.0)),
    )
    self.kl_weight = float(entry.get("kl_weight", 1e-3))
    self.modality_weights = dict(entry.get("modality_weights") or {})

  def check(self, output_keys, batch_keys) -> None:
    super().check(output_keys, batch_keys)
    if not any(k.startswith("recon/") for k in output_keys):
      raise ValueError(
        f"{self.where} (type 'reconstruction') needs 'recon/<s>_to_<t>' outputs (model "
        f"'cross_modal_autoencoder'); the model outputs {sorted(output_keys)}."
      )

  def __call__(self, outputs, batch, step):
    del step
    metrics = direction_errors(outputs, batch)
    total = 0.0
    for key, value in metrics.items():
      if not key.startswith("error/"):
        continue
      source, target = key[len("error/") :].rsplit("_to_", 1)
      kind = "joint" if source == "joint" else "self" if source == target else "cross"
      total = total + self.weights[kind] * float(self.modality_weights.get(target, 1.0)) * value
    if "kl" in outputs:
      metrics["kl"] = outputs["kl"]
      total = total + self.kl_weight * outputs["kl"]
    return total, metrics
