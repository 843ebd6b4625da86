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


def last_token(x: jax.Array, mask: jax.Array) -> jax.Array:
  """The last valid token of each row.

  Args:
    x: `[batch, tokens, width]`.
    mask: bool `[batch, tokens]`, True on valid tokens.

  Returns:
    `[batch, width]`: `x[b, i_b]` with `i_b` the largest valid index of row b
    (index 0 for a row without valid tokens).
  """
  chex.assert_rank(x, 3)
  chex.assert_shape(mask, x.shape[:2])
  idx = jnp.max(jnp.where(mask, jnp.arange(x.shape[1])[None], 0), axis=1)
  return jnp.take_along_axis(x, idx[:, None, None], axis=1)[:, 0]


def sinusoidal_positions(length: int, width: int) -> jax.Array:
  """Fixed sine/cosine position table `[length, width]` (Vaswani et al.)."""
  half = width // 2
  freqs = jnp.exp(-jnp.log(10000.0) * jnp.arange(half) / max(half - 1, 1))
  angles = jnp.arange(length)[:, None] * freqs[None, :]
  table = jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=1)
  return jnp.pad(table, ((0, 0), (0, width - 2 * half)))
