"""'matching': binary cross-entropy of a matching head's pairs (image–text matching).

  c.objectives = dict(itm=dict(type="matching"), contrastive=dict(type="clip"))

The model outputs 'match_logits' float32 `[B, 1 + K]` (column 0 the true pair,
the others negatives) and 'match_valid' bool `[B, 1 + K]`
(`cmjax/models/matcher.py`). The loss is the mean over valid entries of the
sigmoid cross-entropy with target 1 for the true pair and 0 for the
negatives (ALBEF's two-way softmax on one logit). Metrics: 'accuracy' (logit
> 0 on the right side), 'positive_accuracy', 'negative_accuracy'.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from cmjax.objectives import base


def matching_loss(logits: jax.Array, valid: jax.Array) -> tuple[jax.Array, dict]:
  """logits float `[B, 1 + K]` (true pair first), valid bool `[B, 1 + K]` ->
  (mean sigmoid cross-entropy over valid entries, metrics)."""
  target = jnp.zeros_like(logits).at[:, 0].set(1.0)
  # -log sigmoid(x) for positives, -log sigmoid(-x) for negatives, stably.
  nll = jax.nn.softplus(jnp.where(target > 0, -logits, logits))
  w = valid.astype(jnp.float32)
  correct = ((logits > 0) == (target > 0)).astype(jnp.float32)
  pos, neg = w[:, :1], w[:, 1:]

  def mean(x, weights):
    return jnp.sum(x * weights) / jnp.maximum(jnp.sum(weights), 1.0)

  metrics = dict(
    accuracy=mean(correct, w),
    positive_accuracy=mean(correct[:, :1], pos),
    negative_accuracy=mean(correct[:, 1:], neg),
  )
  return mean(nll, w), metrics


@base.register("matching")
class MatchingObjective(base.Objective):
  needs_outputs = ("match_logits", "match_valid")

  def __init__(self, entry, ctx, where=""):
    super().__init__(entry, ctx, where)
    base.check_keys(self.where, entry, ())
    if "dataset" in tuple(ctx.config.model.get("negatives", ())):
      # Scored by the model only when the batch has them: require them here.
      self.needs_batch = ("negative_text", "negative_text_mask")

  def __call__(self, outputs, batch, step):
    del batch, step
    return matching_loss(outputs["match_logits"], outputs["match_valid"])
