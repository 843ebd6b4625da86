"""The layers every model builds on: `Dtype` and logically partitioned dense, conv,
patch-embedding, LayerNorm and embedding layers.

Each helper returns a plain flax module whose parameters carry logical axis
names (`nn.with_logical_partitioning`), which `cmjax.sharding` maps onto the
mesh. Building them here, once, keeps the axis names, initialisers and
parameter names the same in every encoder and fusion method: a helper changes
nothing about the module it returns but how it is spelled.

Two faster forms of flax's layers live here as well, with flax's parameters,
initialisation and results:

* `Dense` / `flat_matmul`: a dense layer applied to `[batch, tokens, in]` is a
  `dot_general` with two free (batch, tokens) axes on one side. Its weight
  gradient then contracts over both of them, and XLA's CPU backend lays that
  out with a transposed copy of the `[batch * tokens, out]` activation
  gradient before every such matmul. Flattening the leading axes first (a
  free reshape) makes forward, input gradient and weight gradient plain 2-D
  matmuls with no copies: a stack of ViT-S MLP blocks trains 1.35x faster on
  CPU this way (not measured on GPU, where the reshape is free too).
* `conv_as_matmul` (im2col): XLA's CPU convolutions, and above all their
  gradients, are slow next to its matmuls: in the default experiment's train
  step the three stride-2 ViT stem convolutions cost more than the rest of the
  image tower. Gathering the k x k patches into channels and multiplying by the
  reshaped kernel gives the same result with a plain matmul forward and
  backward (8% faster step). `nn.Conv(..., conv_general_dilated=conv_as_matmul)`
  keeps the parameters as they are.

`benchmarks/train_throughput.py` measures both on the whole step.
"""

import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

# The one alias for compute / parameter dtypes (jnp.float32, jnp.bfloat16, ...).
Dtype = Any
Initializer = Callable[..., jax.Array]
# Logical axis names of one parameter, one entry (a name or None) per axis.
LogicalAxes = tuple[str | None, ...]


def flat_matmul(
  x: jax.Array, kernel: jax.Array, contract: int = 1, precision=None, preferred_element_type=None
) -> jax.Array:
  """`x` contracted over its last `contract` axes with `kernel`'s first ones.

  Args:
    x: `[*lead, *k]` with `len(k) == contract`.
    kernel: `[*k, *out]`.
    contract: how many trailing axes of `x` (leading axes of `kernel`) are summed.
    precision, preferred_element_type: passed to `jnp.matmul`.

  Returns:
    `[*lead, *out]`, equal to `jnp.tensordot(x, kernel, contract)`.
  """
  lead, k_shape = x.shape[: x.ndim - contract], x.shape[x.ndim - contract :]
  if tuple(kernel.shape[:contract]) != tuple(k_shape):
    raise ValueError(
      f"flat_matmul: x {x.shape} and kernel {kernel.shape} do not share "
      f"the {contract} contracted axes"
    )
  out_shape = kernel.shape[contract:]
  k, n = math.prod(k_shape), math.prod(out_shape)
  y = jnp.matmul(
    x.reshape(-1, k),
    kernel.reshape(k, n),
    precision=precision,
    preferred_element_type=preferred_element_type,
  )
  return y.reshape(*lead, *out_shape)


class Dense(nn.Dense):
  """`nn.Dense` over `[..., in]` as one `[rows, in] @ [in, out]` matmul.

  Parameters (`kernel [in, out]`, `bias [out]`), their initialisation and the
  result are exactly `nn.Dense`'s; only the layout of the matmul differs.
  """

  def __call__(self, inputs: jax.Array) -> jax.Array:
    lead = inputs.shape[:-1]
    flat = jnp.reshape(inputs, (math.prod(lead), inputs.shape[-1]))
    return jnp.reshape(super().__call__(flat), (*lead, self.features))


def conv_as_matmul(
  lhs: jax.Array,
  rhs: jax.Array,
  window_strides: Sequence[int],
  padding: Sequence[tuple[int, int]],
  lhs_dilation=None,
  rhs_dilation=None,
  dimension_numbers=None,
  feature_group_count: int = 1,
  precision=None,
  **unused,
) -> jax.Array:
  """`lax.conv_general_dilated` for NHWC inputs and HWIO kernels, as a matmul.

  Args:
    lhs: `[batch, H, W, C]`.
    rhs: `[kh, kw, C, O]`.
    window_strides: `(sh, sw)`.
    padding: explicit `((top, bottom), (left, right))`.
    lhs_dilation, rhs_dilation, feature_group_count: must be trivial (1s).
    dimension_numbers: must be NHWC / HWIO / NHWC (flax's default).
    precision: passed to the matmul.

  Returns:
    `[batch, H', W', O]`, as `lax.conv_general_dilated`.
  """
  if dimension_numbers is not None:
    dn = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    want = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, ("NHWC", "HWIO", "NHWC"))
    if dn != want:
      raise ValueError(f"conv_as_matmul needs NHWC/HWIO layouts, got {dimension_numbers}")
  for name, value in (("lhs_dilation", lhs_dilation), ("rhs_dilation", rhs_dilation)):
    if value is not None and any(d != 1 for d in value):
      raise ValueError(f"conv_as_matmul does not support {name}={value}")
  if feature_group_count != 1 or isinstance(padding, str):
    raise ValueError(
      "conv_as_matmul needs feature_group_count=1 and explicit padding, "
      f"got {feature_group_count}, {padding!r}"
    )
  kh, kw, c, o = rhs.shape
  sh, sw = window_strides
  x = jnp.pad(lhs, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
  out_h = (x.shape[1] - kh) // sh + 1
  out_w = (x.shape[2] - kw) // sw + 1
  # [batch, H', W', kh * kw * C], patch entries in the kernel's (i, j, c) order.
  patches = jnp.concatenate(
    [
      x[:, i : i + sh * (out_h - 1) + 1 : sh, j : j + sw * (out_w - 1) + 1 : sw, :]
      for i in range(kh)
      for j in range(kw)
    ],
    axis=-1,
  )
  return flat_matmul(patches, rhs.reshape(kh * kw * c, o), precision=precision)


def dense(
  features: int,
  name: str,
  dtype: Dtype = jnp.float32,
  use_bias: bool = True,
  in_axis: str | None = "embed",
  out_axis: str | None = "mlp",
  *,
  kernel_init: Initializer = nn.initializers.lecun_normal(),
  param_dtype: Dtype = jnp.float32,
) -> Dense:
  """A `Dense` `[..., in] -> [..., features]` with partitioned parameters.

  Args:
    features: output width.
    name: the module's (and so its parameters') name.
    dtype, param_dtype: compute and parameter dtypes.
    use_bias: whether there is a `bias [features]`.
    in_axis, out_axis: logical names of `kernel [in, features]`'s axes; the
      bias takes `out_axis`.
    kernel_init: the kernel's initialiser (the bias starts at zero).
  """
  return Dense(
    features,
    use_bias=use_bias,
    dtype=dtype,
    param_dtype=param_dtype,
    name=name,
    kernel_init=nn.with_logical_partitioning(kernel_init, (in_axis, out_axis)),
    bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), (out_axis,)),
  )


def conv(
  features: int,
  kernel_size: Sequence[int],
  strides: Sequence[int],
  padding: str | Sequence[tuple[int, int]],
  name: str,
  dtype: Dtype,
  kernel_axes: LogicalAxes,
  *,
  use_bias: bool = True,
  kernel_init: Initializer = nn.initializers.lecun_normal(),
  conv_general_dilated: Callable[..., jax.Array] | None = None,
) -> nn.Conv:
  """An `nn.Conv` `[batch, *spatial, in] -> [batch, *spatial', features]`, partitioned.

  Args:
    features: output channels.
    kernel_size, strides: one entry per spatial axis.
    padding: 'VALID' / 'SAME' or explicit `((lo, hi), ...)` per spatial axis.
    name: the module's name.
    dtype: compute dtype.
    kernel_axes: logical names of `kernel [*kernel_size, in, features]`'s
      axes; the bias `[features]` takes the last one.
    use_bias: whether there is a bias (starting at zero).
    kernel_init: the kernel's initialiser.
    conv_general_dilated: replaces `lax.conv_general_dilated` (e.g.
      `conv_as_matmul`); None keeps flax's default.
  """
  if len(kernel_axes) != len(kernel_size) + 2:
    raise ValueError(
      f"kernel_axes {kernel_axes} must name the {len(kernel_size)} window "
      "axes, the input and the output channels"
    )
  return nn.Conv(
    features,
    tuple(kernel_size),
    strides=tuple(strides),
    padding=padding,
    use_bias=use_bias,
    dtype=dtype,
    name=name,
    conv_general_dilated=conv_general_dilated,
    kernel_init=nn.with_logical_partitioning(kernel_init, tuple(kernel_axes)),
    bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), (kernel_axes[-1],)),
  )


def patch_embed(width: int, patch: Sequence[int], name: str, dtype: Dtype) -> nn.Conv:
  """Linear embedding of non-overlapping patches (images, spectrograms, tubelets).

  A conv whose stride equals its kernel is one linear map per patch; flax's
  conv does it without an explicit patch reshape.

  Args:
    width: embedding size.
    patch: patch size along each spatial axis, e.g. `(p, p)` for an image,
      `(time, freq)` for a spectrogram, `(frames, p, p)` for a video tubelet.
    name: the module's name ('patch_embed', 'tubelet_embed').
    dtype: compute dtype.

  Returns:
    An `nn.Conv` mapping `[batch, *spatial, channels]` (spatial sizes multiples
    of `patch`) to `[batch, *(spatial / patch), width]`, with `kernel
    [*patch, channels, width]` on `(None, ..., 'conv_in', 'embed')` and
    `bias [width]` on `('embed',)`.
  """
  patch = tuple(patch)
  return conv(
    width, patch, patch, "VALID", name, dtype, (None,) * len(patch) + ("conv_in", "embed")
  )


def layer_norm(
  name: str | None = None,
  dtype: Dtype = jnp.float32,
  param_dtype: Dtype = jnp.float32,
  axis: str = "embed",
  epsilon: float = 1e-6,
) -> nn.LayerNorm:
  """LayerNorm over the last axis whose scale/bias `[features]` carry the `axis` logical name.

  `epsilon` is flax's 1e-6 by default; imported weights need their own (CLIP
  1e-5, BERT 1e-12)."""
  return nn.LayerNorm(
    epsilon=epsilon,
    dtype=dtype,
    param_dtype=param_dtype,
    name=name,
    scale_init=nn.with_logical_partitioning(nn.initializers.ones_init(), (axis,)),
    bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), (axis,)),
  )


def token_embed(
  vocab_size: int,
  width: int,
  dtype: Dtype = jnp.float32,
  param_dtype: Dtype = jnp.float32,
  name: str = "token_embed",
) -> nn.Embed:
  """Token ids int `[...]` -> `[..., width]`.

  The table `embedding [vocab_size, width]` is on ('vocab', 'embed').
  """
  return nn.Embed(
    vocab_size,
    width,
    dtype=dtype,
    param_dtype=param_dtype,
    name=name,
    embedding_init=nn.with_logical_partitioning(nn.initializers.normal(0.02), ("vocab", "embed")),
  )


def quick_gelu(x: jax.Array) -> jax.Array:
  """`x * sigmoid(1.702 x)`: the GELU approximation OpenAI's CLIP was trained with."""
  return x * jax.nn.sigmoid(1.702 * x)


# Activations by the name a config gives; imported weights need the one they
# were trained with.
ACTIVATIONS = {
  "gelu_tanh": lambda x: nn.gelu(x, approximate=True),  # flax's default; SigLIP, ViT
  "gelu": lambda x: nn.gelu(x, approximate=False),  # exact (erf); BERT
  "quick_gelu": quick_gelu,  # OpenAI CLIP
  "relu": nn.relu,
}


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
  """The activation function `name` (a key of `ACTIVATIONS`)."""
  if name not in ACTIVATIONS:
    raise ValueError(f"activation={name!r}; expected one of {sorted(ACTIVATIONS)}")
  return ACTIVATIONS[name]
