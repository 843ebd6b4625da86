"""BERT-style text encoder (post-LayerNorm), as Hugging Face's `BertModel` computes.

Token, position and token-type embeddings summed and normalised; each layer
`LN(x + Attn(x))` then `LN(h + FFN(h))` with exact (erf) GELU; pooling as
sentence-transformers does (masked mean: all-MiniLM, SBERT) or the first
([CLS]) token. With the weights converted by `cmjax.pretrained.hf_bert`, it
computes what `BertModel` computes (tests/test_pretrained_bert.py).
"""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from cmjax.models.attention import MultiHeadAttention
from cmjax.models.encoders import EncoderOutput, register_encoder
from cmjax.models.layers import Dtype, dense
from cmjax.models.pooling import masked_mean


def _layer_norm(name: str, epsilon: float, param_dtype) -> nn.LayerNorm:
  return nn.LayerNorm(
    epsilon=epsilon,
    param_dtype=param_dtype,
    name=name,
    scale_init=nn.with_logical_partitioning(nn.initializers.ones_init(), ("embed",)),
    bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), ("embed",)),
  )


def _embed(name: str, rows: int, width: int, param_dtype) -> nn.Embed:
  return nn.Embed(
    rows,
    width,
    param_dtype=param_dtype,
    name=name,
    embedding_init=nn.with_logical_partitioning(nn.initializers.normal(0.02), (None, "embed")),
  )


class BertLayer(nn.Module):
  """`h = LN(x + Attn(x)); LN(h + W2 gelu(W1 h))` on `[batch, tokens, width]`."""

  num_heads: int
  mlp_dim: int
  epsilon: float = 1e-12
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
    width = x.shape[-1]
    attn = MultiHeadAttention(
      self.num_heads, dtype=self.dtype, param_dtype=self.param_dtype, name="attn"
    )(x, key_mask=mask)
    h = _layer_norm("ln_attn", self.epsilon, self.param_dtype)(x + attn)
    f = dense(
      self.mlp_dim, "fc1", self.dtype, in_axis="embed", out_axis="mlp", param_dtype=self.param_dtype
    )(h)
    f = nn.gelu(f, approximate=False)
    f = dense(
      width, "fc2", self.dtype, in_axis="mlp", out_axis="embed", param_dtype=self.param_dtype
    )(f)
    return _layer_norm("ln_mlp", self.epsilon, self.param_dtype)(h + f)


@register_encoder("text", "bert")
class BertEncoder(nn.Module):
  """BERT / MiniLM text tower: token ids `[batch, L]` + mask -> tokens and pooled.

  Attributes:
    vocab_size: the tokenizer's ids (the checkpoint's word-embedding rows).
    max_len: rows of the position table (512 for BERT).
    width, depth, num_heads, mlp_dim: sizes.
    type_vocab_size: rows of the token-type table (all tokens are type 0 here).
    pool: 'mean' (masked mean, sentence-transformers) or 'first' ([CLS]).
    epsilon: LayerNorm epsilon (1e-12 in BERT).
  """

  vocab_size: int
  max_len: int = 512
  width: int = 384
  depth: int = 6
  num_heads: int = 12
  mlp_dim: int = 1536
  type_vocab_size: int = 2
  pool: str = "mean"
  epsilon: float = 1e-12
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(
    self, text: jax.Array, text_mask: jax.Array, *, train: bool = False
  ) -> EncoderOutput:
    """text: int `[batch, L]`; text_mask: bool `[batch, L]` (True = real token)."""
    del train  # no dropout: the converted models are used as they were trained
    chex.assert_rank([text, text_mask], 2)
    batch, length = text.shape
    if self.pool not in ("mean", "first"):
      raise ValueError(f"pool must be 'mean' or 'first', got {self.pool!r}")
    if length > self.max_len:
      raise ValueError(f"text length {length} exceeds max_len {self.max_len}")
    mask = text_mask.astype(jnp.bool_)
    x = _embed("token_embed", self.vocab_size, self.width, self.param_dtype)(text)
    x = (
      x + _embed("pos_embed", self.max_len, self.width, self.param_dtype)(jnp.arange(length))[None]
    )
    x = x + _embed("type_embed", self.type_vocab_size, self.width, self.param_dtype)(
      jnp.zeros_like(text)
    )
    x = _layer_norm("ln_embed", self.epsilon, self.param_dtype)(x).astype(self.dtype)
    for i in range(self.depth):
      x = BertLayer(
        self.num_heads, self.mlp_dim, self.epsilon, self.dtype, self.param_dtype, name=f"layer{i}"
      )(x, mask)
    pooled = x[:, 0] if self.pool == "first" else masked_mean(x, mask)
    chex.assert_shape(pooled, (batch, self.width))
    return EncoderOutput(x, pooled, mask)
