"""Multi-head attention: `attend` (XLA, any backend) or a fused kernel.

Parameter layout (names and shapes) is the same as
`flax.linen.MultiHeadDotProductAttention`, so weights can be copied between the
two and checked for equal outputs:

  query/key/value: kernel [in_dim, heads, head_dim], bias [heads, head_dim]
  out:             kernel [heads, head_dim, out_dim], bias [out_dim]

By default (`implementation=None`) the attention is `attend` below: plain
einsums and a softmax normalised after the weighted sum, which XLA compiles
well on every backend. `implementation='xla'` or `'cudnn'` call
`jax.nn.dot_product_attention` with that kernel instead; 'cudnn' is the fused
kernel on NVIDIA GPUs (checked on an H100 to match XLA in bf16, with padding
and causal masks).

Cross-attention: `inputs_kv` may have a different width from `inputs_q`; the
key/value kernels are then `[kv_dim, heads, head_dim]` (as in flax).

Attention dropout (`dropout_rate > 0` and `deterministic=False`) drops entries
of the softmax weights `[batch, heads, q, kv]` independently, with the
'dropout' rng, exactly like flax's reference with `broadcast_dropout=False`.
It is done in `attend` (implementation=None).
"""

import math
from typing import Any, Callable

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from cmjax.models.layers import Dtype, flat_matmul


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
    implementation: None: `attend` (einsums, any backend, supports dropout);
      else passed to `jax.nn.dot_product_attention`: 'xla', or 'cudnn' for
      the fused GPU kernel (bf16/fp16 only; `key_mask` must then be
      right-padded, True on a prefix of each row, as it is passed as lengths).
    dropout_rate: dropout on the attention weights (active only when called
      with `deterministic=False`; needs the 'dropout' rng).
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
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(
    self,
    inputs_q: jax.Array,
    inputs_kv: jax.Array | None = None,
    *,
    key_mask: jax.Array | None = None,
    causal: bool = False,
    deterministic: bool = True,
    cache: dict | None = None,
    return_kv: bool = False,
  ) -> jax.Array | tuple[jax.Array, dict]:
    """Attends from `inputs_q` to `inputs_kv` (self-attention if None).

    Args:
      inputs_q: `[batch, q_tokens, in_dim]`.
      inputs_kv: `[batch, kv_tokens, kv_dim]` or None for self-attention.
      key_mask: optional bool `[batch, kv_tokens]`, True on keys that may be
        attended to (padding is False).
      causal: if True, query i attends only to keys j <= i.
      deterministic: if False and `dropout_rate > 0`, applies attention
        dropout (rng 'dropout').
      cache: keys and values kept between decoding steps (then returns
        `(output, cache)`; always `attend`, no dropout):
        `dict(key=, value=)` `[batch, kv_tokens, heads, head_dim]` as
        `return_kv` gave them: cross-attention to them (`inputs_kv` unused);
        `dict(key=, value=, index=)` with int32 scalar `index`: causal
        self-attention, the new tokens' keys and values written at
        `index, index + 1, ...`, each query seeing the positions up to its own;
        the returned cache's index is advanced by `q_tokens`.
      return_kv: also return this call's `dict(key=, value=)` (to build a
        cross-attention cache once per sequence).

    Returns:
      `[batch, q_tokens, out_features]` (and the cache or keys/values, above).
    """
    self_attention = inputs_kv is None
    if self_attention:
      inputs_kv = inputs_q
    chex.assert_rank([inputs_q, inputs_kv], 3)
    batch, q_len, in_dim = inputs_q.shape
    kv_len = inputs_kv.shape[1]
    chex.assert_equal(inputs_kv.shape[0], batch)
    head_dim = self.head_dim or in_dim // self.num_heads
    if self.head_dim is None and in_dim % self.num_heads:
      raise ValueError(
        f"width {in_dim} is not divisible by num_heads {self.num_heads}; set head_dim explicitly"
      )
    out_features = self.out_features or in_dim

    if cache is not None:
      return self._cached(inputs_q, cache, key_mask, head_dim, out_features)
    # [batch, tokens, heads, head_dim]: the layout dot_product_attention wants.
    if self_attention:
      q, k, v = self._project(inputs_q, ("query", "key", "value"), head_dim)
    else:
      (q,) = self._project(inputs_q, ("query",), head_dim)
      k, v = self._project(inputs_kv, ("key", "value"), head_dim)
    chex.assert_shape(q, (batch, q_len, self.num_heads, head_dim))
    chex.assert_shape([k, v], (batch, kv_len, self.num_heads, head_dim))

    if key_mask is not None:
      chex.assert_shape(key_mask, (batch, kv_len))
    use_dropout = self.dropout_rate > 0.0 and not deterministic
    x = self._attend(q, k, v, key_mask, causal, use_dropout)
    chex.assert_shape(x, (batch, q_len, self.num_heads, head_dim))
    out = self._output(x, head_dim, out_features)
    chex.assert_shape(out, (batch, q_len, out_features))
    return (out, dict(key=k, value=v)) if return_kv else out

  def _cached(self, inputs_q, cache, key_mask, head_dim: int, out_features: int):
    """One decoding step against `cache` (see `__call__`): `(output, cache)`."""
    mask = key_mask_to_attention_mask(key_mask)
    if "index" in cache:  # causal self-attention: append this step's keys / values
      q, k, v = self._project(inputs_q, ("query", "key", "value"), head_dim)
      index = jnp.asarray(cache["index"], jnp.int32)
      start = (0, index, 0, 0)
      keys = jax.lax.dynamic_update_slice(cache["key"], k.astype(cache["key"].dtype), start)
      values = jax.lax.dynamic_update_slice(cache["value"], v.astype(cache["value"].dtype), start)
      q_len, kv_len = q.shape[1], keys.shape[1]
      seen = jnp.arange(kv_len)[None, :] <= index + jnp.arange(q_len)[:, None]  # [q, kv]
      mask = seen[None, None] if mask is None else jnp.logical_and(mask, seen[None, None])
      cache = dict(key=keys, value=values, index=index + q_len)
    else:  # cross-attention to keys / values projected once
      (q,) = self._project(inputs_q, ("query",), head_dim)
      keys, values = cache["key"], cache["value"]
    x = attend(q, keys.astype(q.dtype), values.astype(q.dtype), mask)
    return self._output(x, head_dim, out_features), cache

  def _attend(self, q, k, v, key_mask, causal: bool, use_dropout: bool) -> jax.Array:
    """`[batch, q_tokens, heads, head_dim]`: `attend`, or jax's dot_product_attention."""
    if self.implementation is None:
      drop = self._dropout_keep if use_dropout else None
      return attend(q, k, v, key_mask_to_attention_mask(key_mask), causal, drop)
    mask, kv_lengths = None, None
    if key_mask is not None:
      if self.implementation == "cudnn":
        # cuDNN rejects a broadcast [batch, 1, 1, kv] mask but has a fused
        # padding mode driven by lengths. Exact for right-padded (prefix)
        # masks, which is what our text and audio masks are. Clamped at 1 so
        # an all-padding row stays finite (its output is unused anyway).
        kv_lengths = jnp.maximum(jnp.sum(key_mask, axis=-1, dtype=jnp.int32), 1)
      else:
        mask = key_mask_to_attention_mask(key_mask)
    if use_dropout:
      raise ValueError(f"attention dropout needs implementation=None, got {self.implementation!r}")
    return jax.nn.dot_product_attention(
      q,
      k,
      v,
      mask=mask,
      key_value_seq_lengths=kv_lengths,
      is_causal=causal,
      implementation=self.implementation,
    )

  def _output(self, x: jax.Array, head_dim: int, out_features: int) -> jax.Array:
    """The output projection: `[batch, q, heads, head_dim]` -> `[batch, q, out_features]`."""
    kernel, bias = _ProjectionParams(
      ((self.num_heads, head_dim, out_features), (out_features,)),
      self.use_bias,
      self.param_dtype,
      self.kernel_init,
      self.bias_init,
      axes=(("heads", "head_dim", "embed"), ("embed",)),
      name="out",
    )()
    x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
    out = flat_matmul(x, kernel, contract=2)  # one [batch * q, heads * head_dim] matmul
    if self.use_bias:
      out = out + bias.astype(out.dtype)
    return out

  def _project(self, x: jax.Array, names: tuple[str, ...], head_dim: int):
    """Projections `names` of `x`, each `[batch, tokens, heads, head_dim]`, from one matmul.

    Each name holds its own kernel `[in_dim, heads, head_dim]` and bias, as
    flax's `nn.DenseGeneral` projections do (checkpoints and the flax layout
    are unchanged); they are concatenated along the heads axis at apply time,
    so self-attention's q, k and v cost one matmul (4% of the default
    experiment's step on CPU against three).
    """
    shapes = (x.shape[-1], self.num_heads, head_dim), (self.num_heads, head_dim)
    kernels, biases = [], []
    for name in names:
      kernel, bias = _ProjectionParams(
        shapes, self.use_bias, self.param_dtype, self.kernel_init, self.bias_init, name=name
      )()
      kernels.append(kernel)
      biases.append(bias)
    x, kernel = nn.dtypes.promote_dtype(x, jnp.concatenate(kernels, axis=1), dtype=self.dtype)
    out = flat_matmul(x, kernel)  # [batch, tokens, len(names) * heads, head_dim]
    if self.use_bias:
      out = out + jnp.concatenate(biases, axis=0).astype(out.dtype)
    return jnp.split(out, len(names), axis=2)

  def _dropout_keep(self, shape: tuple[int, ...]) -> tuple[jax.Array, float]:
    """A bool keep mask of `shape` (rng 'dropout') and the keep probability."""
    keep_prob = 1.0 - self.dropout_rate
    return jax.random.bernoulli(self.make_rng("dropout"), keep_prob, shape), keep_prob


class _ProjectionParams(nn.Module):
  """A kernel and bias named as `nn.DenseGeneral`'s; returns them (bias None without bias).

  `shapes` is `(kernel shape, bias shape)`; the kernel's input axes are all but
  the bias's trailing ones: `[in_dim, heads, head_dim]` with bias `[heads, head_dim]`
  for q/k/v, `[heads, head_dim, out_dim]` with bias `[out_dim]` for the output.
  """

  shapes: tuple
  use_bias: bool
  param_dtype: Dtype
  kernel_init: Any
  bias_init: Any
  axes: tuple = (("embed", "heads", "head_dim"), ("heads", "head_dim"))

  @nn.compact
  def __call__(self):
    kernel_shape, bias_shape = self.shapes
    kernel_axes, bias_axes = self.axes

    # Initialised as nn.DenseGeneral does: on the flattened `[in, out]` shape
    # (so fan-in is the product of the input axes), then reshaped; same rng
    # path, same values.
    def flat(init, lead):
      def init_fn(rng, shape, dtype=jnp.float32):
        flat_shape = (math.prod(shape[:lead]), math.prod(shape[lead:]))
        return jnp.reshape(init(rng, flat_shape[1:] if lead == 0 else flat_shape, dtype), shape)

      return init_fn

    kernel = self.param(
      "kernel",
      nn.with_logical_partitioning(
        flat(self.kernel_init, len(kernel_shape) - len(bias_shape)), kernel_axes
      ),
      kernel_shape,
      self.param_dtype,
    )
    bias = (
      self.param(
        "bias",
        nn.with_logical_partitioning(flat(self.bias_init, 0), bias_axes),
        bias_shape,
        self.param_dtype,
      )
      if self.use_bias
      else None
    )
    return kernel, bias


def attend(
  q: jax.Array,
  k: jax.Array,
  v: jax.Array,
  mask: jax.Array | None = None,
  causal: bool = False,
  dropout: Callable[[tuple[int, ...]], tuple[jax.Array, float]] | None = None,
) -> jax.Array:
  """Softmax attention, normalised after the weighted sum.

  Equal to `softmax(q.k / sqrt(d)) @ v` (as `jax.nn.dot_product_attention`),
  but the division by the softmax denominator is applied to the
  `[batch, heads, q, head_dim]` output instead of to the `[batch, heads, q, kv]`
  weights, and the weights are never normalised on their own. On CPU that
  halves the attention's time (fwd + bwd), since XLA's fusions over the small
  last axis of the weights are slow; see benchmarks/train_throughput.py.

  Args:
    q: `[batch, q_tokens, heads, head_dim]`.
    k, v: `[batch, kv_tokens, heads, head_dim]`.
    mask: bool broadcastable to `[batch, heads, q_tokens, kv_tokens]`, or None.
    causal: whether query i sees only keys j <= i.
    dropout: optional `shape -> (keep mask, keep probability)`: dropout on the
      softmax weights (each entry kept with that probability, scaled up).

  Returns:
    `[batch, q_tokens, heads, head_dim]` in q's dtype. Logits, exponentials and
    the denominator are float32.
  """
  q_len, kv_len = q.shape[1], k.shape[1]
  scale = jnp.asarray(q.shape[-1] ** -0.5, q.dtype)
  # Heads-major [batch, heads, tokens, head_dim] once, up front: both einsums
  # below are then plain batched matmuls, where the token-major layout made
  # XLA:CPU transpose their operands and output on every call (2-3% of the
  # default experiment's step; benchmarks/train_throughput.py).
  qh, kh, vh = (jnp.swapaxes(a, 1, 2) for a in (q * scale, k, v))
  logits = jnp.einsum("bhqd,bhkd->bhqk", qh, kh, preferred_element_type=jnp.float32)
  if causal:
    tri = jnp.tril(jnp.ones((q_len, kv_len), jnp.bool_))[None, None]
    mask = tri if mask is None else jnp.logical_and(mask, tri)
  if mask is not None:
    # A finite large negative keeps fully masked rows finite (uniform weights).
    logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
  # The max is a constant shift of each row: it needs no gradient.
  e = jnp.exp(logits - jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True)))
  denominator = jnp.sum(e, axis=-1, keepdims=True)  # [batch, heads, q_tokens, 1]
  if dropout is not None:
    keep, keep_prob = dropout(e.shape)
    e = jnp.where(keep, e, 0.0)
    denominator = denominator * keep_prob
  out = (
    jnp.einsum("bhqk,bhkd->bhqd", e.astype(v.dtype), vh, preferred_element_type=jnp.float32)
    / denominator
  )
  return jnp.swapaxes(out, 1, 2).astype(q.dtype)
