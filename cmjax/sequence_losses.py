"""Losses over token sequences: teacher-forced cross-entropy (captioning) and
CTC (speech recognition). Pure functions over arrays."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def token_cross_entropy(
  logits: jax.Array,
  targets: jax.Array,
  weights: jax.Array,
  label_smoothing: float = 0.0,
) -> tuple[jax.Array, dict]:
  """Mean cross-entropy per target token.

  Args:
    logits: float `[B, L, V]`.
    targets: int `[B, L]`.
    weights: `[B, L]`, 1 on tokens that count (0 on padding, on rows without
      a target).
    label_smoothing: mass spread uniformly over the V classes (as
      `torch.nn.functional.cross_entropy(label_smoothing=)`).
  Returns:
    (scalar loss: Σ w·ce / Σ w, {'token_accuracy', 'perplexity' (exp of the
    unsmoothed loss), 'tokens' (Σ w)}).
  """
  chex.assert_rank([logits, targets, weights], [3, 2, 2])
  chex.assert_equal_shape([targets, weights])
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  nll = -jnp.take_along_axis(logp, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
  ce = (1.0 - label_smoothing) * nll - label_smoothing * jnp.mean(logp, axis=-1)
  w = weights.astype(jnp.float32)
  count = jnp.maximum(jnp.sum(w), 1.0)
  correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
  metrics = dict(
    token_accuracy=jnp.sum(w * correct) / count,
    perplexity=jnp.exp(jnp.sum(w * nll) / count),
    tokens=jnp.sum(w),
  )
  return jnp.sum(w * ce) / count, metrics
