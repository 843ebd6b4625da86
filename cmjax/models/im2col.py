"""Convolution as one matmul over gathered patches (im2col), for the ViT conv stem.

XLA's CPU convolutions, and above all their gradients, are slow next to its
matmuls: in the default experiment's train step the three stride-2 stem
convolutions cost more than the rest of the image tower. Gathering the k x k
patches into channels and multiplying by the reshaped kernel gives the same
result with a plain matmul forward and backward (8% faster step, measured in
benchmarks/train_throughput.py). `nn.Conv(..., conv_general_dilated=conv_as_matmul)`
keeps the parameters as they are.
"""

from typing import Sequence

import jax
import jax.numpy as jnp

from cmjax.models.dense import flat_matmul


def conv_as_matmul(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int],
                   padding: Sequence[tuple[int, int]], lhs_dilation=None, rhs_dilation=None,
                   dimension_numbers=None, feature_group_count: int = 1,
                   precision=None, **unused) -> jax.Array:
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
    want = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, ('NHWC', 'HWIO', 'NHWC'))
    if dn != want:
      raise ValueError(f'conv_as_matmul needs NHWC/HWIO layouts, got {dimension_numbers}')
  for name, value in (('lhs_dilation', lhs_dilation), ('rhs_dilation', rhs_dilation)):
    if value is not None and any(d != 1 for d in value):
      raise ValueError(f'conv_as_matmul does not support {name}={value}')
  if feature_group_count != 1 or isinstance(padding, str):
    raise ValueError('conv_as_matmul needs feature_group_count=1 and explicit padding, '
                     f'got {feature_group_count}, {padding!r}')
  kh, kw, c, o = rhs.shape
  sh, sw = window_strides
  x = jnp.pad(lhs, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
  out_h = (x.shape[1] - kh) // sh + 1
  out_w = (x.shape[2] - kw) // sw + 1
  # [batch, H', W', kh * kw * C], patch entries in the kernel's (i, j, c) order.
  patches = jnp.concatenate(
      [x[:, i:i + sh * (out_h - 1) + 1:sh, j:j + sw * (out_w - 1) + 1:sw, :]
       for i in range(kh) for j in range(kw)], axis=-1)
  return flat_matmul(patches, rhs.reshape(kh * kw * c, o), precision=precision)
