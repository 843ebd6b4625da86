"""Alignment of paired embeddings, and the terms that keep it from collapsing.

Pure functions over `[batch, dim]` embeddings x, y (row i of x pairs with row
i of y). Each takes an optional weight per row `w` (float `[batch]`, 0 for
rows that are padding or lack a modality), so that missing modalities count
nowhere; statistics over the batch are weighted means.

  invariance(x, y)       mean squared difference: the alignment term
                         (min Σ‖f(x¹) − g(x²)‖², per element as VICReg's)
  vicreg_variance(z)     mean over dims of relu(gamma - sqrt(var + eps))
  vicreg_covariance(z)   squared off-diagonal covariance, summed, / dim
  barlow_twins(x, y)     Σ_i (1 - C_ii)² + λ Σ_{i≠j} C_ij², C the
                         cross-correlation of batch-standardised x and y

Alone, the invariance term is minimised by mapping everything to one point
(collapse); VICReg's variance and covariance terms, or Barlow Twins' loss,
prevent it. Conventions follow the papers' reference code: VICReg's variance
and covariance use the unbiased (n - 1) estimate, Barlow Twins standardises
with the biased variance and eps 1e-5 (an affine-free BatchNorm) and divides
C by n.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def _weights(w: jax.Array | None, n: int) -> jax.Array:
  if w is None:
    return jnp.ones((n,), jnp.float32)
  chex.assert_shape(w, (n,))
  return w.astype(jnp.float32)


def _count(w: jax.Array) -> jax.Array:
  return jnp.maximum(jnp.sum(w), 1.0)


def weighted_moments(z: jax.Array, w: jax.Array | None = None, ddof: int = 0):
  """Per-dimension mean and variance over the batch: `[B, D]` -> (`[D]`, `[D]`).

  `ddof=1` gives the unbiased variance (denominator Σw - 1)."""
  chex.assert_rank(z, 2)
  z = z.astype(jnp.float32)
  w = _weights(w, z.shape[0])
  n = _count(w)
  mean = jnp.sum(w[:, None] * z, axis=0) / n
  var = jnp.sum(w[:, None] * (z - mean) ** 2, axis=0) / jnp.maximum(n - ddof, 1.0)
  return mean, var


def embedding_std(z: jax.Array, w: jax.Array | None = None) -> jax.Array:
  """Mean over dims of the per-dimension standard deviation over the batch:
  near 0 when the embeddings have collapsed to one point."""
  _, var = weighted_moments(z, w)
  return jnp.mean(jnp.sqrt(var))


def invariance(x: jax.Array, y: jax.Array, w: jax.Array | None = None) -> jax.Array:
  """Mean over valid rows and dims of `(x - y)²`: `[B, D]`, `[B, D]` -> scalar."""
  chex.assert_rank([x, y], 2)
  chex.assert_equal_shape([x, y])
  w = _weights(w, x.shape[0])
  d = (x.astype(jnp.float32) - y.astype(jnp.float32)) ** 2
  return jnp.sum(w[:, None] * d) / (_count(w) * x.shape[1])


def vicreg_variance(
  z: jax.Array, w: jax.Array | None = None, gamma: float = 1.0, eps: float = 1e-4
) -> jax.Array:
  """Hinge on each dimension's standard deviation: mean_j relu(gamma - std_j)."""
  _, var = weighted_moments(z, w, ddof=1)
  return jnp.mean(jax.nn.relu(gamma - jnp.sqrt(var + eps)))


def vicreg_covariance(z: jax.Array, w: jax.Array | None = None) -> jax.Array:
  """Σ_{i≠j} Cov(z)_ij² / D, the covariance over valid rows (unbiased)."""
  chex.assert_rank(z, 2)
  z = z.astype(jnp.float32)
  w = _weights(w, z.shape[0])
  mean, _ = weighted_moments(z, w)
  c = z - mean
  cov = (c * w[:, None]).T @ c / jnp.maximum(_count(w) - 1.0, 1.0)
  off = cov - jnp.diag(jnp.diag(cov))
  return jnp.sum(off**2) / z.shape[1]


def cross_correlation(
  x: jax.Array, y: jax.Array, w: jax.Array | None = None, eps: float = 1e-5
) -> jax.Array:
  """`[D, D]` cross-correlation of x and y standardised per dimension over the batch."""
  chex.assert_rank([x, y], 2)
  chex.assert_equal_shape([x, y])
  w = _weights(w, x.shape[0])

  def standardise(z):
    mean, var = weighted_moments(z, w)
    return (z.astype(jnp.float32) - mean) * jax.lax.rsqrt(var + eps)

  return (standardise(x) * w[:, None]).T @ standardise(y) / _count(w)


def barlow_twins(
  x: jax.Array, y: jax.Array, w: jax.Array | None = None, lambd: float = 5e-3
) -> jax.Array:
  """Barlow Twins: Σ_i (1 - C_ii)² + lambd · Σ_{i≠j} C_ij² (C: `cross_correlation`)."""
  c = cross_correlation(x, y, w)
  on = jnp.sum((jnp.diag(c) - 1.0) ** 2)
  off = jnp.sum(c**2) - jnp.sum(jnp.diag(c) ** 2)
  return on + lambd * off
