"""Text Transformer: token ids `[batch, L]` + mask -> tokens and pooled vector."""

from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from cmjax.models.pooling import masked_mean
from cmjax.models.transformer import Transformer

Dtype = Any


class TextTransformer(nn.Module):
  """Bidirectional text encoder with key padding mask.

  Attributes:
    vocab_size: number of token ids (0 is padding by convention).
    max_len: longest supported sequence (size of the position table).
    width, depth, num_heads, mlp_dim: Transformer sizes.
    pool: 'mean' (masked mean over real tokens) or 'first' (first token).
    dropout_rate: dropout inside the Transformer.
    dtype: compute dtype.
  """
  vocab_size: int
  max_len: int = 32
  width: int = 128
  depth: int = 2
  num_heads: int = 4
  mlp_dim: int = 256
  pool: str = 'mean'
  dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, text: jax.Array, text_mask: jax.Array, *,
               train: bool = False) -> tuple[jax.Array, jax.Array]:
    """text: int `[batch, L]`; text_mask: bool `[batch, L]` (True = real token).

    Returns (tokens `[batch, L, width]`, pooled `[batch, width]`).
    """
    chex.assert_rank([text, text_mask], 2)
    chex.assert_equal_shape([text, text_mask])
    batch, length = text.shape
    if length > self.max_len:
      raise ValueError(f'text length {length} exceeds max_len {self.max_len}')
    if self.pool not in ('mean', 'first'):
      raise ValueError(f"pool must be 'mean' or 'first', got {self.pool!r}")
    mask = text_mask.astype(jnp.bool_)
    x = nn.Embed(self.vocab_size, self.width, dtype=self.dtype, name='token_embed',
                 embedding_init=nn.with_logical_partitioning(
                     nn.initializers.normal(0.02), ('vocab', 'embed')))(text)
    pos = self.param('pos_embedding', nn.with_logical_partitioning(
        nn.initializers.normal(0.01), ('pos', 'embed')), (self.max_len, self.width))
    x = x + pos[:length].astype(self.dtype)[None]
    x = Transformer(self.depth, self.num_heads, self.mlp_dim, self.dropout_rate,
                    self.dtype, name='transformer')(x, mask, deterministic=not train)
    pooled = x[:, 0] if self.pool == 'first' else masked_mean(x, mask)
    chex.assert_shape(x, (batch, length, self.width))
    chex.assert_shape(pooled, (batch, self.width))
    return x, pooled
