"""Losses over token sequences: teacher-forced cross-entropy (captioning) and
CTC (speech recognition). Pure functions over arrays."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import optax


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


def ctc_loss(
  logits: jax.Array,
  frame_mask: jax.Array,
  labels: jax.Array,
  label_mask: jax.Array,
  blank_id: int = 0,
) -> jax.Array:
  """Connectionist temporal classification: -log p(labels | frames), per example.

  Args:
    logits: float `[B, T, V]` per frame (V includes the blank).
    frame_mask: bool `[B, T]`, True on real frames (a prefix of each row).
    labels: int `[B, N]`, the target ids (never the blank).
    label_mask: bool `[B, N]`, True on real labels (a prefix of each row).
    blank_id: the blank's id.
  Returns:
    float32 `[B]`: each example's negative log-likelihood (as
    `torch.nn.functional.ctc_loss(reduction='none')`; an impossible alignment,
    more labels than frames allow, gives a very large value, not inf).
  """
  chex.assert_rank([logits, frame_mask, labels, label_mask], [3, 2, 2, 2])
  return optax.ctc_loss(
    logits.astype(jnp.float32),
    1.0 - frame_mask.astype(jnp.float32),
    labels.astype(jnp.int32),
    1.0 - label_mask.astype(jnp.float32),
    blank_id=blank_id,
  )
