"""Multi-head attention built on `jax.nn.dot_product_attention`.

Parameter layout (names and shapes) is the same as
`flax.linen.MultiHeadDotProductAttention`, so weights can be copied between the
two and checked for equal outputs:

  query/key/value: kernel [in_dim, heads, head_dim], bias [heads, head_dim]
  out:             kernel [heads, head_dim, out_dim], bias [out_dim]

We call `jax.nn.dot_product_attention` with `implementation=None` by default so
that JAX picks the kernel (XLA everywhere as of jax 0.11); `implementation=
'cudnn'` selects the fused cuDNN kernel on NVIDIA GPUs (checked on an H100 to
match XLA in bf16, with padding and causal masks).
"""

from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any


def key_mask_to_attention_mask(key_mask: jax.Array | None) -> jax.Array | None:
  """Turns a key padding mask into a mask broadcastable over attention logits.

  Args:
    key_mask: bool `[batch, kv_tokens]`, True on real tokens, or None.

  Returns:
    bool `[batch, 1, 1, kv_tokens]` (broadcasts over heads and queries), or None.
  """
  if key_mask is None:
    return None
  chex.assert_rank(key_mask, 2)
  return key_mask.astype(jnp.bool_)[:, None, None, :]


class MultiHeadAttention(nn.Module):
  """Multi-head (self or cross) attention.

  Attributes:
    num_heads: number of attention heads.
    head_dim: size of each head; defaults to `in_dim // num_heads`.
    out_features: output width; defaults to the query input width.
    use_bias: whether the q/k/v/out projections have biases.
    dtype: compute dtype (parameters stay `param_dtype`).
    param_dtype: parameter dtype.
    implementation: passed to `jax.nn.dot_product_attention`. None lets JAX
      choose (in jax 0.10/0.11 that is always XLA); 'cudnn' asks for the fused
      GPU kernel (bf16/fp16 only), and then `key_mask` must be right-padded
      (True on a prefix of each row), since it is passed as lengths.
  """
  num_heads: int
  head_dim: int | None = None
  out_features: int | None = None
  use_bias: bool = True
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  implementation: str | None = None
  kernel_init: Any = nn.initializers.lecun_normal()
  bias_init: Any = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, inputs_q: jax.Array, inputs_kv: jax.Array | None = None,
               *, key_mask: jax.Array | None = None,
               causal: bool = False) -> jax.Array:
    """Attends from `inputs_q` to `inputs_kv` (self-attention if None).

    Args:
      inputs_q: `[batch, q_tokens, in_dim]`.
      inputs_kv: `[batch, kv_tokens, kv_dim]` or None for self-attention.
      key_mask: optional bool `[batch, kv_tokens]`, True on keys that may be
        attended to (padding is False).
      causal: if True, query i attends only to keys j <= i.

    Returns:
      `[batch, q_tokens, out_features]`.
    """
    if inputs_kv is None:
      inputs_kv = inputs_q
    chex.assert_rank([inputs_q, inputs_kv], 3)
    batch, q_len, in_dim = inputs_q.shape
    kv_len = inputs_kv.shape[1]
    chex.assert_equal(inputs_kv.shape[0], batch)
    head_dim = self.head_dim or in_dim // self.num_heads
    if self.head_dim is None and in_dim % self.num_heads:
      raise ValueError(f'width {in_dim} is not divisible by num_heads '
                       f'{self.num_heads}; set head_dim explicitly')
    out_features = self.out_features or in_dim

    def proj(name: str) -> nn.DenseGeneral:
      return nn.DenseGeneral(
          features=(self.num_heads, head_dim), axis=-1, use_bias=self.use_bias,
          dtype=self.dtype, param_dtype=self.param_dtype, name=name,
          kernel_init=nn.with_logical_partitioning(
              self.kernel_init, ('embed', 'heads', 'head_dim')),
          bias_init=nn.with_logical_partitioning(
              self.bias_init, ('heads', 'head_dim')))

    # [batch, tokens, heads, head_dim]: the layout dot_product_attention wants.
    q = proj('query')(inputs_q)
    k = proj('key')(inputs_kv)
    v = proj('value')(inputs_kv)
    chex.assert_shape(q, (batch, q_len, self.num_heads, head_dim))
    chex.assert_shape([k, v], (batch, kv_len, self.num_heads, head_dim))

    mask, kv_lengths = None, None
    if key_mask is not None:
      chex.assert_shape(key_mask, (batch, kv_len))
      if self.implementation == 'cudnn':
        # cuDNN rejects a broadcast [batch, 1, 1, kv] mask but has a fused
        # padding mode driven by lengths. Exact for right-padded (prefix)
        # masks, which is what our text and audio masks are. Clamped at 1 so
        # an all-padding row stays finite (its output is unused anyway).
        kv_lengths = jnp.maximum(jnp.sum(key_mask, axis=-1, dtype=jnp.int32), 1)
      else:
        # A boolean mask (not an additive bias) keeps fully masked rows
        # finite: masked logits become a large negative number.
        mask = key_mask_to_attention_mask(key_mask)
    x = jax.nn.dot_product_attention(
        q, k, v, mask=mask, key_value_seq_lengths=kv_lengths,
        is_causal=causal, implementation=self.implementation)

    out = nn.DenseGeneral(
        features=out_features, axis=(-2, -1), use_bias=self.use_bias,
        dtype=self.dtype, param_dtype=self.param_dtype, name='out',
        kernel_init=nn.with_logical_partitioning(
            self.kernel_init, ('heads', 'head_dim', 'embed')),
        bias_init=nn.with_logical_partitioning(self.bias_init, ('embed',)))(x)
    chex.assert_shape(out, (batch, q_len, out_features))
    return out
