"""Fusion over token sequences: cross-attention, a joint Transformer, bottlenecks.

Each modality's tokens `[B, n_m, d_m]` are first projected to `width`. A
token is valid when the encoder's mask says so and its modality is present;
attention never looks at invalid tokens and pooling skips them, so a missing
modality cannot influence an example's output.
"""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from cmjax.models.attention import MultiHeadAttention
from cmjax.models.fusion.common import Features, register_fusion
from cmjax.models.fusion.pooled import FusionBase
from cmjax.models.layers import dense, layer_norm
from cmjax.models.pooling import masked_mean
from cmjax.models.transformer import EncoderBlock, MlpBlock, Transformer


class TokenFusionBase(FusionBase):
  """Adds the projected, masked token sequences and per-example modality pooling.

  Attributes:
    depth, num_heads, mlp_dim: sizes of the attention layers.
    dropout_rate: dropout inside them.
  """

  depth: int = 1
  num_heads: int = 4
  mlp_dim: int = 256
  dropout_rate: float = 0.0

  def projected_tokens(
    self, features: Features, present
  ) -> tuple[dict[str, jax.Array], dict[str, jax.Array], jax.Array]:
    """({m: tokens `[B, n_m, width]`}, {m: valid bool `[B, n_m]`}, presence `[B, M]`)."""
    _, flags = self.pooled(features, present)
    tokens, valid = {}, {}
    for i, m in enumerate(self.modalities):
      out = features[m]
      valid[m] = out.mask.astype(jnp.bool_) & flags[:, i : i + 1]
      x = dense(self.width, f"{m}_token_proj", self.dtype)(out.tokens.astype(self.dtype))
      # Invalid tokens zeroed: their values can then never leak anywhere.
      tokens[m] = jnp.where(valid[m][..., None], x, 0.0)
    return tokens, valid, flags

  def mean_over_present(self, per_modality: list[jax.Array], flags: jax.Array) -> jax.Array:
    """Mean over the present modalities of `[B, width]` vectors -> `[B, width]`."""
    return masked_mean(jnp.stack(per_modality, axis=1), flags)


@register_fusion("cross_attention")
class CrossAttentionFusion(TokenFusionBase):
  """Each modality's tokens attend to all other modalities' tokens.

  Per layer and modality m: x_m += CrossAttn(LN(x_m), LN(tokens of the
  others)); x_m += MLP(LN(x_m)). The output is the mean over present
  modalities of each one's masked token mean.
  """

  min_modalities: ClassVar[int] = 2

  @nn.compact
  def __call__(self, features: Features, present=None, *, train: bool = False) -> jax.Array:
    x, valid, flags = self.projected_tokens(features, present)
    for layer in range(self.depth):
      new = {}
      for m in self.modalities:
        others = [o for o in self.modalities if o != m]
        kv = jnp.concatenate([x[o] for o in others], axis=1)
        kv_valid = jnp.concatenate([valid[o] for o in others], axis=1)
        q = layer_norm(f"{m}_ln_q{layer}", self.dtype, jnp.float32)(x[m])
        kv = layer_norm(f"{m}_ln_kv{layer}", self.dtype, jnp.float32)(kv)
        a = MultiHeadAttention(self.num_heads, dtype=self.dtype, name=f"{m}_cross{layer}")(
          q, kv, key_mask=kv_valid
        )
        # With no valid key anywhere the attention would average padding.
        a = jnp.where(jnp.any(kv_valid, axis=1)[:, None, None], a, 0.0)
        h = x[m] + nn.Dropout(self.dropout_rate)(a, deterministic=not train)
        h = h + MlpBlock(self.mlp_dim, self.dropout_rate, self.dtype, name=f"{m}_mlp{layer}")(
          layer_norm(f"{m}_ln_mlp{layer}", self.dtype, jnp.float32)(h), deterministic=not train
        )
        new[m] = jnp.where(valid[m][..., None], h, 0.0)
      x = new
    pooled = [
      masked_mean(layer_norm(f"{m}_ln_out", self.dtype, jnp.float32)(x[m]), valid[m])
      for m in self.modalities
    ]
    return self.mean_over_present(pooled, flags)


@register_fusion("joint_transformer")
class JointTransformerFusion(TokenFusionBase):
  """One Transformer over [CLS; tokens of every modality + its modality embedding].

  The output is the CLS token; padding and missing modalities are masked keys.
  """

  @nn.compact
  def __call__(self, features: Features, present=None, *, train: bool = False) -> jax.Array:
    x, valid, _ = self.projected_tokens(features, present)
    embed = self.param(
      "modality_embedding",
      nn.with_logical_partitioning(nn.initializers.normal(0.02), (None, "embed")),
      (len(self.modalities), self.width),
    )
    batch = x[self.modalities[0]].shape[0]
    cls = self.param(
      "cls", nn.with_logical_partitioning(nn.initializers.zeros_init(), ("embed",)), (self.width,)
    )
    seq = [jnp.broadcast_to(cls.astype(self.dtype), (batch, 1, self.width))]
    seq += [x[m] + embed[i].astype(self.dtype) for i, m in enumerate(self.modalities)]
    mask = [jnp.ones((batch, 1), jnp.bool_)] + [valid[m] for m in self.modalities]
    out = Transformer(
      self.depth, self.num_heads, self.mlp_dim, self.dropout_rate, self.dtype, name="transformer"
    )(jnp.concatenate(seq, axis=1), jnp.concatenate(mask, axis=1), deterministic=not train)
    return out[:, 0]


@register_fusion("bottleneck")
class BottleneckFusion(TokenFusionBase):
  """Attention bottlenecks (MBT, Nagrani et al. 2021).

  Every modality has its own Transformer layers. For the first
  `fusion_layer` layers they run separately; from then on each modality's
  layer also sees `num_bottlenecks` shared tokens, and after every layer the
  shared tokens become the mean of the modalities' updated copies (over the
  modalities present in that example): all cross-modal information passes
  through those few tokens. Output: the mean over present modalities of each
  one's masked token mean.

  Attributes:
    fusion_layer: index of the first layer with bottlenecks (0..depth).
    num_bottlenecks: number of shared tokens.
  """

  fusion_layer: int = 0
  num_bottlenecks: int = 4

  @nn.compact
  def __call__(self, features: Features, present=None, *, train: bool = False) -> jax.Array:
    if not 0 <= self.fusion_layer <= self.depth:
      raise ValueError(f"fusion_layer must be in [0, depth={self.depth}], got {self.fusion_layer}")
    x, valid, flags = self.projected_tokens(features, present)
    batch = flags.shape[0]
    nb = self.num_bottlenecks
    b = jnp.broadcast_to(
      self.param(
        "bottleneck_init",
        nn.with_logical_partitioning(nn.initializers.normal(0.02), (None, "embed")),
        (nb, self.width),
      ).astype(self.dtype),
      (batch, nb, self.width),
    )
    for layer in range(self.depth):
      fused = layer >= self.fusion_layer
      copies = []
      for m in self.modalities:
        block = EncoderBlock(
          self.num_heads, self.mlp_dim, self.dropout_rate, self.dtype, name=f"{m}_block{layer}"
        )
        if fused:
          seq = jnp.concatenate([x[m], b], axis=1)
          mask = jnp.concatenate([valid[m], jnp.ones((batch, nb), jnp.bool_)], axis=1)
          y = block(seq, mask, not train)
          x[m], copy = y[:, :-nb], y[:, -nb:]
          copies.append(copy)
        else:
          x[m] = block(x[m], valid[m], not train)
        x[m] = jnp.where(valid[m][..., None], x[m], 0.0)
      if fused:
        stacked = jnp.stack(copies, axis=1)  # [B, M, nb, width]
        w = flags.astype(self.dtype)[:, :, None, None]
        count = jnp.maximum(jnp.sum(w, axis=1), 1.0)
        # An example with no modality present keeps its bottleneck tokens.
        b = jnp.where(
          jnp.any(flags, axis=1)[:, None, None], jnp.sum(stacked * w, axis=1) / count, b
        )
    pooled = [
      masked_mean(layer_norm(f"{m}_ln_out", self.dtype, jnp.float32)(x[m]), valid[m])
      for m in self.modalities
    ]
    return self.mean_over_present(pooled, flags)
