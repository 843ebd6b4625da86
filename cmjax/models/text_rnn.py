"""Recurrent text encoder (LSTM/GRU): token ids `[batch, L]` + mask -> tokens, pooled.

Same call signature and outputs as `TextTransformer`, so either can be a text
tower. Sequence lengths come from the mask (which must be right-padded: True on
a prefix of each row), and `flax.linen.RNN` gets them as `seq_lengths`, so a
row's real tokens never see its padding: appending padding does not change the
pooled output, and the backward direction of a bidirectional RNN starts at the
last real token.

Parameters (logical axes): `token_embed/embedding ('vocab', 'embed')`; per
layer `rnn{i}/cell` (bidirectional: `rnn{i}/forward_rnn/cell`,
`rnn{i}/backward_rnn/cell`)
with the cell's input kernels `('embed', 'mlp')`, recurrent kernels
`(None, 'mlp')`, biases `('mlp',)` (the recurrent state is the 'mlp' axis); a
bidirectional encoder has `out_proj` `[2 * width, width]` `('mlp', 'embed')`.
"""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from cmjax.models.encoders import EncoderOutput, register_encoder
from cmjax.models.layers import Dtype, dense, token_embed
from cmjax.models.pooling import last_token, masked_mean


def _orthogonal_f32(key: jax.Array, shape: tuple[int, ...], dtype: Dtype = jnp.float32):
  """Orthogonal init computed in float32 (CPU QR has no bfloat16), then cast."""
  return nn.initializers.orthogonal()(key, shape, jnp.float32).astype(dtype)


@register_encoder("text", "rnn")
class TextRNN(nn.Module):
  """LSTM or GRU text encoder.

  Attributes:
    vocab_size: number of token ids (0 is padding by convention).
    width: embedding and hidden size; outputs have this width.
    cell: 'lstm' (`nn.OptimizedLSTMCell`) or 'gru' (`nn.GRUCell`).
    bidirectional: run a backward RNN too (`nn.Bidirectional`); the two
      directions are concatenated and projected back to `width` by `out_proj`.
    depth: number of stacked RNN layers.
    pool: 'last' or 'mean'. 'last' is the state after the last real token
      (bidirectional: [forward state at the last real token, backward state at
      the first token], projected); 'mean' is the masked mean of the tokens.
    dropout_rate: dropout on the input of every layer (when `train`).
    dtype: compute dtype.
    param_dtype: parameter dtype.
  """

  vocab_size: int
  width: int = 128
  cell: str = "lstm"
  bidirectional: bool = False
  depth: int = 1
  pool: str = "last"
  dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  def _cell(self) -> nn.RNNCellBase:
    kwargs = dict(
      features=self.width,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), ("embed", "mlp")),
      recurrent_kernel_init=nn.with_logical_partitioning(_orthogonal_f32, (None, "mlp")),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), ("mlp",)),
      # Unbound, so that `nn.RNN` adopts it (params under `rnn{i}/cell`).
      parent=None,
    )
    if self.cell == "lstm":
      return nn.OptimizedLSTMCell(**kwargs)
    return nn.GRUCell(**kwargs)

  @nn.compact
  def __call__(
    self, text: jax.Array, text_mask: jax.Array, *, train: bool = False
  ) -> EncoderOutput:
    """text: int `[batch, L]`; text_mask: bool `[batch, L]` (True = real token).

    Returns EncoderOutput(tokens `[batch, L, width]` (zeros at padding), pooled
    `[batch, width]`, mask: text_mask as bool).
    """
    chex.assert_rank([text, text_mask], 2)
    chex.assert_equal_shape([text, text_mask])
    if self.cell not in ("lstm", "gru"):
      raise ValueError(f"cell must be 'lstm' or 'gru', got {self.cell!r}")
    if self.pool not in ("last", "mean"):
      raise ValueError(f"pool must be 'last' or 'mean', got {self.pool!r}")
    if self.depth < 1:
      raise ValueError(f"depth must be >= 1, got {self.depth}")
    batch, length = text.shape
    mask = text_mask.astype(jnp.bool_)
    lengths = jnp.sum(mask, axis=1, dtype=jnp.int32)
    x = token_embed(self.vocab_size, self.width, self.dtype, self.param_dtype)(text)
    for i in range(self.depth):
      x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
      if self.bidirectional:
        layer = nn.Bidirectional(
          nn.RNN(self._cell(), parent=None), nn.RNN(self._cell(), parent=None), name=f"rnn{i}"
        )
      else:
        layer = nn.RNN(self._cell(), name=f"rnn{i}")
      x = layer(x, seq_lengths=lengths)
    if self.bidirectional:
      chex.assert_shape(x, (batch, length, 2 * self.width))
      proj = dense(
        self.width,
        "out_proj",
        self.dtype,
        in_axis="mlp",
        out_axis="embed",
        param_dtype=self.param_dtype,
      )
      # Forward state after the last real token; backward state after reading
      # the row from its last real token back to the first one.
      last = jnp.concatenate(
        [last_token(x[..., : self.width], mask), x[:, 0, self.width :]], axis=-1
      )
      x = proj(x)
    else:
      last = last_token(x, mask)
    x = jnp.where(mask[..., None], x, 0).astype(self.dtype)
    if self.pool == "last":
      pooled = proj(last) if self.bidirectional else last
    else:
      pooled = masked_mean(x, mask)
    chex.assert_shape(x, (batch, length, self.width))
    chex.assert_shape(pooled, (batch, self.width))
    return EncoderOutput(x, pooled, mask)
