"""Pre-LayerNorm Transformer encoder: `[batch, tokens, width]` in and out.

`Transformer(remat=True)` recomputes each block's activations in the backward
pass (`nn.remat`), trading compute for memory; the parameter tree is unchanged.
`Transformer(scan=True)` runs the blocks with `nn.scan`: one compiled block and
parameters stacked on a leading layer axis (logical name None) under
`blocks/block/...`, instead of `block0/...`, `block1/...`. `stack_block_params`
converts an unrolled parameter tree into the scanned layout.
"""

from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from cmjax.models.attention import MultiHeadAttention
from cmjax.models.layers import Dtype, activation, dense, layer_norm


class MlpBlock(nn.Module):
  """Dense -> activation -> dropout -> Dense: `[batch, tokens, width]` -> same.

  `activation` names one of `layers.ACTIVATIONS` (tanh-approximated GELU by
  default; 'quick_gelu' for OpenAI CLIP's weights).
  """

  mlp_dim: int
  dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  activation: str = "gelu_tanh"

  @nn.compact
  def __call__(self, x: jax.Array, *, deterministic: bool = True) -> jax.Array:
    width = x.shape[-1]
    init = nn.initializers.xavier_uniform()
    h = dense(
      self.mlp_dim,
      "fc1",
      self.dtype,
      in_axis="embed",
      out_axis="mlp",
      kernel_init=init,
      param_dtype=self.param_dtype,
    )(x)
    h = activation(self.activation)(h)
    h = nn.Dropout(self.dropout_rate)(h, deterministic=deterministic)
    return dense(
      width,
      "fc2",
      self.dtype,
      in_axis="mlp",
      out_axis="embed",
      kernel_init=init,
      param_dtype=self.param_dtype,
    )(h)


class EncoderBlock(nn.Module):
  """x + Attn(LN(x)), then x + MLP(LN(x)) (pre-LN, as in ViT/CLIP).

  Attributes:
    num_heads, mlp_dim: sizes.
    dropout_rate: dropout on the residual branches and inside the MLP.
    dtype, param_dtype: compute and parameter dtypes.
    attention_dropout_rate: dropout on the attention weights.
    activation: the MLP's (`layers.ACTIVATIONS`).
    ln_epsilon: the LayerNorms' epsilon.
  """

  num_heads: int
  mlp_dim: int
  dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  attention_dropout_rate: float = 0.0
  activation: str = "gelu_tanh"
  ln_epsilon: float = 1e-6

  @nn.compact
  def __call__(
    self,
    x: jax.Array,
    key_mask: jax.Array | None = None,
    deterministic: bool = True,
    causal: bool = False,
  ) -> jax.Array:
    """x: `[batch, tokens, width]`; key_mask: bool `[batch, tokens]` or None.

    `deterministic` and `causal` may be passed positionally (as `nn.remat`
    with `static_argnums` needs).
    """
    chex.assert_rank(x, 3)
    h = layer_norm("ln_attn", self.dtype, self.param_dtype, epsilon=self.ln_epsilon)(x)
    h = MultiHeadAttention(
      num_heads=self.num_heads,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      dropout_rate=self.attention_dropout_rate,
      name="attn",
    )(h, key_mask=key_mask, causal=causal, deterministic=deterministic)
    h = nn.Dropout(self.dropout_rate)(h, deterministic=deterministic)
    x = x + h
    h = layer_norm("ln_mlp", self.dtype, self.param_dtype, epsilon=self.ln_epsilon)(x)
    h = MlpBlock(
      self.mlp_dim, self.dropout_rate, self.dtype, self.param_dtype, self.activation, name="mlp"
    )(h, deterministic=deterministic)
    h = nn.Dropout(self.dropout_rate)(h, deterministic=deterministic)
    return x + h


# Activation rematerialisation: which intermediate values of a block are kept
# for the backward pass (the rest are recomputed there).
REMAT_POLICIES = {
  "full": None,  # keep nothing but the block's input
  # keep the weight matmuls' outputs; recompute attention scores and mixing
  "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def remat_block(block_cls: type, remat: bool | str) -> type:
  """`block_cls`, wrapped in `nn.remat` with the policy `remat` names.

  False / None / 'none': unchanged; True: 'full'; else a key of REMAT_POLICIES.
  """
  if remat in (False, None, "none"):
    return block_cls
  name = "full" if remat is True else remat
  if name not in REMAT_POLICIES:
    raise ValueError(
      f"remat={remat!r}; expected False, True, 'none' or one of {sorted(REMAT_POLICIES)}"
    )
  # Positional (deterministic, causal) are static: argnums count `self`.
  return nn.remat(block_cls, policy=REMAT_POLICIES[name], static_argnums=(3, 4))


class _ScanStep(nn.Module):
  """One `EncoderBlock` as an `nn.scan` step: `(x, key_mask) -> (x, None)`."""

  num_heads: int
  mlp_dim: int
  dropout_rate: float
  dtype: Dtype
  param_dtype: Dtype
  attention_dropout_rate: float
  remat: bool | str
  deterministic: bool
  causal: bool
  activation: str
  ln_epsilon: float

  @nn.compact
  def __call__(self, x: jax.Array, key_mask: jax.Array | None):
    block_cls = remat_block(EncoderBlock, self.remat)
    x = block_cls(
      self.num_heads,
      self.mlp_dim,
      self.dropout_rate,
      self.dtype,
      self.param_dtype,
      self.attention_dropout_rate,
      self.activation,
      self.ln_epsilon,
      name="block",
    )(x, key_mask, self.deterministic, self.causal)
    return x, None


class Transformer(nn.Module):
  """A stack of `depth` pre-LN encoder blocks followed by a final LayerNorm.

  The final LayerNorm is part of the stack because pre-LN residual streams are
  otherwise un-normalised at the output.

  Attributes:
    depth, num_heads, mlp_dim: sizes.
    dropout_rate: dropout on residual branches and in the MLP.
    dtype: compute dtype.
    remat: what each block keeps for the backward pass (see `remat_block`):
      False / 'none' everything, True / 'full' nothing (all recomputed),
      'dots' the results of its weight matmuls.
    scan: run the blocks with `nn.scan` (params `blocks/block/...` with a
      leading `[depth]` axis).
    param_dtype: parameter dtype.
    attention_dropout_rate: dropout on attention weights.
    activation: the MLPs' (`layers.ACTIVATIONS`).
    ln_epsilon: the LayerNorms' epsilon (flax's 1e-6; CLIP's weights 1e-5).
  """

  depth: int
  num_heads: int
  mlp_dim: int
  dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32
  remat: bool | str = False
  scan: bool = False
  param_dtype: Dtype = jnp.float32
  attention_dropout_rate: float = 0.0
  activation: str = "gelu_tanh"
  ln_epsilon: float = 1e-6

  @nn.compact
  def __call__(
    self,
    x: jax.Array,
    key_mask: jax.Array | None = None,
    *,
    deterministic: bool = True,
    causal: bool = False,
  ) -> jax.Array:
    """x: `[batch, tokens, width]`; key_mask: bool `[batch, tokens]` or None.

    Returns `[batch, tokens, width]`.
    """
    chex.assert_rank(x, 3)
    if key_mask is not None:
      chex.assert_shape(key_mask, x.shape[:2])
    shape = x.shape
    x = x.astype(self.dtype)
    if self.scan:
      stack = nn.scan(
        _ScanStep,
        variable_axes={"params": 0},
        split_rngs={"params": True, "dropout": True},
        in_axes=nn.broadcast,
        length=self.depth,
        metadata_params={nn.PARTITION_NAME: None},
      )
      x, _ = stack(
        self.num_heads,
        self.mlp_dim,
        self.dropout_rate,
        self.dtype,
        self.param_dtype,
        self.attention_dropout_rate,
        self.remat,
        deterministic,
        causal,
        self.activation,
        self.ln_epsilon,
        name="blocks",
      )(x, key_mask)
    else:
      block_cls = remat_block(EncoderBlock, self.remat)
      for i in range(self.depth):
        x = block_cls(
          self.num_heads,
          self.mlp_dim,
          self.dropout_rate,
          self.dtype,
          self.param_dtype,
          self.attention_dropout_rate,
          self.activation,
          self.ln_epsilon,
          name=f"block{i}",
        )(x, key_mask, deterministic, causal)
    x = layer_norm("ln_final", self.dtype, self.param_dtype, epsilon=self.ln_epsilon)(x)
    chex.assert_shape(x, shape)
    return x


def stack_block_params(params: Any, depth: int) -> Any:
  """Unrolled Transformer params (`block{i}`) -> the `scan=True` layout.

  Args:
    params: the Transformer's param dict (unboxed), with `block0..block{depth-1}`.
    depth: number of blocks.

  Returns:
    A dict with `blocks/block/...` leaves stacked to `[depth, ...]` and every
    other entry (e.g. `ln_final`) unchanged.
  """
  blocks = [params[f"block{i}"] for i in range(depth)]
  rest = {k: v for k, v in params.items() if not k.startswith("block")}
  stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *blocks)
  return {**rest, "blocks": {"block": stacked}}
