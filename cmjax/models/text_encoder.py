"""Text Transformer: token ids `[batch, L]` + mask -> tokens and pooled vector."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from cmjax.models.encoders import EncoderOutput, register_encoder
from cmjax.models.layers import Dtype, token_embed
from cmjax.models.pooling import last_token, masked_mean, sinusoidal_positions
from cmjax.models.transformer import Transformer


@register_encoder("text", "transformer")
class TextTransformer(nn.Module):
  """Text Transformer encoder (bidirectional, or causal) with key padding mask.

  Attributes:
    vocab_size: number of token ids (0 is padding by convention).
    max_len: longest supported sequence (size of the learned position table).
    width, depth, num_heads, mlp_dim: Transformer sizes.
    pool: 'mean' (masked mean over real tokens), 'first' (first token),
      'last' (last real token of each row; with `causal` the only token that
      has seen the whole text: CLIP's end-of-text token) or 'end' (the last
      position, padding or not: SigLIP, trained on texts padded to max_len).
    dropout_rate: dropout inside the Transformer.
    dtype: compute dtype.
    causal: token t attends only to tokens <= t (GPT/CLIP-style text tower).
    positions: 'learned' (a `pos_embedding [max_len, width]` param) or
      'sinusoidal' (fixed table, no param; any length allowed) or 'none' (no
      word order at all: with pool='mean' and no causal mask the text embedding
      is a function of the bag of words, a baseline for compositionality).
    remat, scan: passed to `Transformer`.
    param_dtype: parameter dtype.
    activation: the MLPs' (`layers.ACTIVATIONS`; 'quick_gelu' for CLIP).
    ln_epsilon: every LayerNorm's epsilon (1e-6; CLIP's weights 1e-5).
    mask_padding: padding tokens are hidden from attention (True). SigLIP's
      text tower was trained attending to its pad tokens: False reproduces it.
  """

  vocab_size: int
  max_len: int = 32
  width: int = 128
  depth: int = 2
  num_heads: int = 4
  mlp_dim: int = 256
  pool: str = "mean"
  dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32
  causal: bool = False
  positions: str = "learned"
  remat: bool | str = False
  scan: bool = False
  param_dtype: Dtype = jnp.float32
  activation: str = "gelu_tanh"
  ln_epsilon: float = 1e-6
  mask_padding: bool = True

  @nn.compact
  def __call__(
    self, text: jax.Array, text_mask: jax.Array, *, train: bool = False
  ) -> EncoderOutput:
    """text: int `[batch, L]`; text_mask: bool `[batch, L]` (True = real token).

    Returns EncoderOutput(tokens `[batch, L, width]`, pooled `[batch, width]`,
    mask: text_mask as bool).
    """
    chex.assert_rank([text, text_mask], 2)
    chex.assert_equal_shape([text, text_mask])
    batch, length = text.shape
    if self.pool not in ("mean", "first", "last", "end"):
      raise ValueError(f"pool must be 'mean', 'first', 'last' or 'end', got {self.pool!r}")
    if self.positions not in ("learned", "sinusoidal", "none"):
      raise ValueError(
        f"positions must be 'learned', 'sinusoidal' or 'none', got {self.positions!r}"
      )
    if self.positions == "learned" and length > self.max_len:
      raise ValueError(f"text length {length} exceeds max_len {self.max_len}")
    mask = text_mask.astype(jnp.bool_)
    x = token_embed(self.vocab_size, self.width, self.dtype, self.param_dtype)(text)
    if self.positions == "learned":
      pos = self.param(
        "pos_embedding",
        nn.with_logical_partitioning(nn.initializers.normal(0.01), ("pos", "embed")),
        (self.max_len, self.width),
        self.param_dtype,
      )[:length]
    elif self.positions == "sinusoidal":
      pos = sinusoidal_positions(length, self.width)
    else:  # no word order: with mean pooling, a bag of words
      pos = jnp.zeros((length, self.width), self.dtype)
    x = x + pos.astype(self.dtype)[None]
    x = Transformer(
      self.depth,
      self.num_heads,
      self.mlp_dim,
      self.dropout_rate,
      self.dtype,
      remat=self.remat,
      scan=self.scan,
      param_dtype=self.param_dtype,
      activation=self.activation,
      ln_epsilon=self.ln_epsilon,
      name="transformer",
    )(x, mask if self.mask_padding else None, deterministic=not train, causal=self.causal)
    if self.pool == "first":
      pooled = x[:, 0]
    elif self.pool == "last":
      pooled = last_token(x, mask)
    elif self.pool == "end":
      pooled = x[:, -1]
    else:
      pooled = masked_mean(x, mask)
    chex.assert_shape(x, (batch, length, self.width))
    chex.assert_shape(pooled, (batch, self.width))
    return EncoderOutput(x, pooled, mask)
