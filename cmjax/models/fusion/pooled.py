"""Fusion of the pooled vectors `[B, d_m]`: concatenation, decision (late) fusion,
weighted sum, product, bilinear, tensor and low-rank tensor fusion, gated units.

A missing modality's pooled vector is zeroed first (see `FusionBase.pooled`),
and each method then makes sure zeros are neutral: sums renormalise their
weights over present modalities, the product uses 1 in their place.
"""

from __future__ import annotations

import itertools
from typing import ClassVar, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from cmjax.models.fusion.common import (
  Features,
  check_features,
  masked_softmax,
  presence,
  register_fusion,
  zero_missing,
)
from cmjax.models.layers import Dtype, dense


class FusionBase(nn.Module):
  """Attributes every fusion method has.

  Attributes:
    modalities: the modalities fused, in a fixed order.
    width: width of the fused representation.
    dtype: compute dtype.
  """

  modalities: tuple[str, ...] = ("image", "text")
  width: int = 128
  dtype: Dtype = jnp.float32
  outputs_logits: ClassVar[bool] = False
  min_modalities: ClassVar[int] = 1

  def pooled(
    self, features: Features, present: Mapping[str, jax.Array] | None
  ) -> tuple[list[jax.Array], jax.Array]:
    """([pooled `[B, d_m]` zeroed where missing, per modality], presence bool `[B, M]`)."""
    check_features(self.modalities, features, self.min_modalities)
    flags = [presence(features, present, m) for m in self.modalities]
    xs = [
      zero_missing(features[m].pooled.astype(self.dtype), p) for m, p in zip(self.modalities, flags)
    ]
    return xs, jnp.stack(flags, axis=1)


@register_fusion("concat")
class ConcatFusion(FusionBase):
  """Early fusion: the concatenated pooled vectors, mapped to `width`."""

  @nn.compact
  def __call__(self, features: Features, present=None, *, train: bool = False) -> jax.Array:
    del train
    xs, _ = self.pooled(features, present)
    return dense(self.width, "out", self.dtype)(jnp.concatenate(xs, axis=-1))


@register_fusion("late")
class LateFusion(FusionBase):
  """Decision fusion: a linear classifier per modality, logits combined.

  Attributes:
    num_classes: classes of each per-modality classifier.
    combine: 'mean' (equal weights) or 'learned' (softmax of learned
      per-modality weights); either way over the present modalities only.
  """

  num_classes: int = 2
  combine: str = "mean"
  outputs_logits: ClassVar[bool] = True

  @nn.compact
  def __call__(self, features: Features, present=None, *, train: bool = False) -> jax.Array:
    del train
    if self.combine not in ("mean", "learned"):
      raise ValueError(f"combine must be 'mean' or 'learned', got {self.combine!r}")
    xs, flags = self.pooled(features, present)
    logits = jnp.stack(
      [
        dense(self.num_classes, f"{m}_classifier", self.dtype)(x)
        for m, x in zip(self.modalities, xs)
      ],
      axis=1,
    )  # [B, M, C]
    scores = jnp.zeros(flags.shape, jnp.float32)
    if self.combine == "learned":
      scores = (
        scores
        + self.param("modality_logits", nn.initializers.zeros_init(), (len(self.modalities),))[None]
      )
    weights = masked_softmax(scores, flags, axis=1)
    return jnp.einsum("bm,bmc->bc", weights.astype(logits.dtype), logits)


@register_fusion("weighted_sum")
class WeightedSumFusion(FusionBase):
  """sum_m w_m * W_m f_m with learned weights w = softmax(a) over present modalities."""

  @nn.compact
  def __call__(self, features: Features, present=None, *, train: bool = False) -> jax.Array:
    del train
    xs, flags = self.pooled(features, present)
    h = jnp.stack(
      [dense(self.width, f"{m}_proj", self.dtype)(x) for m, x in zip(self.modalities, xs)], axis=1
    )  # [B, M, width]
    a = self.param("modality_logits", nn.initializers.zeros_init(), (len(self.modalities),))
    weights = masked_softmax(jnp.broadcast_to(a[None], flags.shape), flags, axis=1)
    return jnp.einsum("bm,bmd->bd", weights.astype(h.dtype), h)


@register_fusion("product")
class ProductFusion(FusionBase):
  """Elementwise product of the projected vectors (1 in place of a missing one)."""

  @nn.compact
  def __call__(self, features: Features, present=None, *, train: bool = False) -> jax.Array:
    del train
    xs, flags = self.pooled(features, present)
    out = jnp.ones((xs[0].shape[0], self.width), self.dtype)
    for i, (m, x) in enumerate(zip(self.modalities, xs)):
      h = dense(self.width, f"{m}_proj", self.dtype)(x)
      out = out * jnp.where(flags[:, i : i + 1], h, 1.0)
    return out


@register_fusion("bilinear")
class BilinearFusion(FusionBase):
  """Sum over modality pairs of bilinear forms: z_k = u_a^T W_ab[k] u_b + bias_k.

  Attributes:
    rank_dim: each pooled vector is first projected to this size, so that a
      pair's weight is `[rank_dim, rank_dim, width]`.
  """

  rank_dim: int = 32
  min_modalities: ClassVar[int] = 2

  @nn.compact
  def __call__(self, features: Features, present=None, *, train: bool = False) -> jax.Array:
    del train
    xs, _ = self.pooled(features, present)
    u = {m: dense(self.rank_dim, f"{m}_proj", self.dtype)(x) for m, x in zip(self.modalities, xs)}
    # A missing modality's u is not zero (the projection has a bias): zero it.
    flags = {m: presence(features, present, m) for m in self.modalities}
    u = {m: zero_missing(v, flags[m]) for m, v in u.items()}
    out = self.param("bias", nn.initializers.zeros_init(), (self.width,)).astype(self.dtype)
    for a, b in itertools.combinations(self.modalities, 2):
      w = self.param(
        f"{a}_{b}_bilinear",
        nn.with_logical_partitioning(
          nn.initializers.normal(1.0 / self.rank_dim), (None, None, "mlp")
        ),
        (self.rank_dim, self.rank_dim, self.width),
      )
      out = out + jnp.einsum("bi,ijk,bj->bk", u[a], w.astype(self.dtype), u[b])
    return out


def _with_one(x: jax.Array) -> jax.Array:
  """`[B, d]` -> `[B, d + 1]` with a trailing 1 (keeps lower-order terms)."""
  return jnp.concatenate([x, jnp.ones(x.shape[:-1] + (1,), x.dtype)], axis=-1)


@register_fusion("tensor")
class TensorFusion(FusionBase):
  """Tensor fusion (Zadeh et al. 2017): the outer product of [u_m; 1] over modalities.

  Attributes:
    tensor_dim: each pooled vector is projected to this size first; the
      outer product then has (tensor_dim + 1) ** M entries.
  """

  tensor_dim: int = 8

  @nn.compact
  def __call__(self, features: Features, present=None, *, train: bool = False) -> jax.Array:
    del train
    xs, flags = self.pooled(features, present)
    t = None
    for i, (m, x) in enumerate(zip(self.modalities, xs)):
      u = zero_missing(dense(self.tensor_dim, f"{m}_proj", self.dtype)(x), flags[:, i])
      z = _with_one(u)
      t = z if t is None else jnp.einsum("bi,bj->bij", t, z).reshape(z.shape[0], -1)
    return dense(self.width, "out", self.dtype)(t)


@register_fusion("low_rank_tensor")
class LowRankTensorFusion(FusionBase):
  """Low-rank multimodal fusion (Liu et al. 2018).

  Equals a tensor fusion of [f_m; 1] whose weight tensor is a sum of `rank`
  outer products of per-modality factors, computed without forming either:
  out = sum_r lambda_r * prod_m ([f_m; 1] @ W_m[r]) + bias.

  Attributes:
    rank: number of rank-one terms.
  """

  rank: int = 4

  @nn.compact
  def __call__(self, features: Features, present=None, *, train: bool = False) -> jax.Array:
    del train
    xs, _ = self.pooled(features, present)
    prod = None
    for m, x in zip(self.modalities, xs):
      factor = self.param(
        f"{m}_factor",
        nn.with_logical_partitioning(
          nn.initializers.normal(1.0 / (x.shape[-1] + 1) ** 0.5), (None, "embed", "mlp")
        ),
        (self.rank, x.shape[-1] + 1, self.width),
      )
      f = jnp.einsum("bi,rio->bro", _with_one(x), factor.astype(self.dtype))
      prod = f if prod is None else prod * f
    lam = self.param("rank_weights", nn.initializers.ones_init(), (self.rank,))
    bias = self.param("bias", nn.initializers.zeros_init(), (self.width,))
    return jnp.einsum("r,bro->bo", lam.astype(self.dtype), prod) + bias.astype(self.dtype)


@register_fusion("gated")
class GatedFusion(FusionBase):
  """Gated multimodal unit (Arevalo et al. 2017), for any number of modalities.

  h_m = tanh(W_m f_m); gates z = softmax over present modalities of
  W_z [f_1; ...; f_M] (per feature); out = sum_m z_m * h_m. For two
  modalities this is the GMU's sigmoid gate z * h_1 + (1 - z) * h_2.
  """

  @nn.compact
  def __call__(self, features: Features, present=None, *, train: bool = False) -> jax.Array:
    del train
    xs, flags = self.pooled(features, present)
    h = jnp.stack(
      [
        jnp.tanh(dense(self.width, f"{m}_proj", self.dtype, use_bias=False)(x))
        for m, x in zip(self.modalities, xs)
      ],
      axis=1,
    )  # [B, M, width]
    gates = dense(len(self.modalities) * self.width, "gate", self.dtype)(
      jnp.concatenate(xs, axis=-1)
    ).reshape(h.shape)
    z = masked_softmax(gates.astype(jnp.float32), flags[..., None], axis=1)
    return jnp.sum(z.astype(h.dtype) * h, axis=1)
