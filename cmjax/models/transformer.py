"""Pre-LayerNorm Transformer encoder: `[batch, tokens, width]` in and out."""

from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from cmjax.models.attention import MultiHeadAttention

Dtype = Any


def layer_norm(name: str | None = None, dtype: Dtype = jnp.float32) -> nn.LayerNorm:
  """LayerNorm whose scale/bias carry the 'embed' logical axis."""
  return nn.LayerNorm(
      dtype=dtype, name=name,
      scale_init=nn.with_logical_partitioning(nn.initializers.ones_init(), ('embed',)),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), ('embed',)))


class MlpBlock(nn.Module):
  """Dense -> GELU -> dropout -> Dense: `[batch, tokens, width]` -> same."""
  mlp_dim: int
  dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, deterministic: bool = True) -> jax.Array:
    width = x.shape[-1]
    init = nn.initializers.xavier_uniform()
    h = nn.Dense(self.mlp_dim, dtype=self.dtype, name='fc1',
                 kernel_init=nn.with_logical_partitioning(init, ('embed', 'mlp')),
                 bias_init=nn.with_logical_partitioning(
                     nn.initializers.zeros_init(), ('mlp',)))(x)
    h = nn.gelu(h)
    h = nn.Dropout(self.dropout_rate)(h, deterministic=deterministic)
    return nn.Dense(width, dtype=self.dtype, name='fc2',
                    kernel_init=nn.with_logical_partitioning(init, ('mlp', 'embed')),
                    bias_init=nn.with_logical_partitioning(
                        nn.initializers.zeros_init(), ('embed',)))(h)


class EncoderBlock(nn.Module):
  """x + Attn(LN(x)), then x + MLP(LN(x)) (pre-LN, as in ViT/CLIP)."""
  num_heads: int
  mlp_dim: int
  dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, key_mask: jax.Array | None = None, *,
               deterministic: bool = True, causal: bool = False) -> jax.Array:
    """x: `[batch, tokens, width]`; key_mask: bool `[batch, tokens]` or None."""
    chex.assert_rank(x, 3)
    h = layer_norm('ln_attn', self.dtype)(x)
    h = MultiHeadAttention(num_heads=self.num_heads, dtype=self.dtype,
                           name='attn')(h, key_mask=key_mask, causal=causal)
    h = nn.Dropout(self.dropout_rate)(h, deterministic=deterministic)
    x = x + h
    h = layer_norm('ln_mlp', self.dtype)(x)
    h = MlpBlock(self.mlp_dim, self.dropout_rate, self.dtype, name='mlp')(
        h, deterministic=deterministic)
    h = nn.Dropout(self.dropout_rate)(h, deterministic=deterministic)
    return x + h


class Transformer(nn.Module):
  """A stack of `depth` pre-LN encoder blocks followed by a final LayerNorm.

  The final LayerNorm is part of the stack because pre-LN residual streams are
  otherwise un-normalised at the output.
  """
  depth: int
  num_heads: int
  mlp_dim: int
  dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, key_mask: jax.Array | None = None, *,
               deterministic: bool = True, causal: bool = False) -> jax.Array:
    """x: `[batch, tokens, width]`; key_mask: bool `[batch, tokens]` or None.

    Returns `[batch, tokens, width]`.
    """
    chex.assert_rank(x, 3)
    if key_mask is not None:
      chex.assert_shape(key_mask, x.shape[:2])
    shape = x.shape
    x = x.astype(self.dtype)
    for i in range(self.depth):
      x = EncoderBlock(self.num_heads, self.mlp_dim, self.dropout_rate,
                       self.dtype, name=f'block{i}')(
                           x, key_mask, deterministic=deterministic, causal=causal)
    x = layer_norm('ln_final', self.dtype)(x)
    chex.assert_shape(x, shape)
    return x
