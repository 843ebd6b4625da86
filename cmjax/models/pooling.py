"""Pooling a token sequence `[batch, tokens, width]` into `[batch, width]`."""

import chex
import jax
import jax.numpy as jnp


def masked_mean(x: jax.Array, mask: jax.Array | None) -> jax.Array:
  """Mean over valid tokens.

  Args:
    x: `[batch, tokens, width]`.
    mask: bool `[batch, tokens]` (True = valid) or None for all valid.

  Returns:
    `[batch, width]`; a row with no valid token gives zeros (not NaN).
  """
  chex.assert_rank(x, 3)
  if mask is None:
    return jnp.mean(x, axis=1)
  chex.assert_shape(mask, x.shape[:2])
  w = mask.astype(x.dtype)[..., None]
  # Sum in float32 so long sequences in bf16 do not lose precision.
  total = jnp.sum((x * w).astype(jnp.float32), axis=1)
  count = jnp.maximum(jnp.sum(w.astype(jnp.float32), axis=1), 1.0)
  return (total / count).astype(x.dtype)


def sinusoidal_positions(length: int, width: int) -> jax.Array:
  """Fixed sine/cosine position table `[length, width]` (Vaswani et al.)."""
  half = width // 2
  freqs = jnp.exp(-jnp.log(10000.0) * jnp.arange(half) / max(half - 1, 1))
  angles = jnp.arange(length)[:, None] * freqs[None, :]
  table = jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=1)
  return jnp.pad(table, ((0, 0), (0, width - 2 * half)))
