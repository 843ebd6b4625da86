"""ResNet-style image CNN: image `[batch, H, W, 3]` -> tokens and pooled vector.

3x3 conv stem -> stages of basic residual blocks (two 3x3 convs, each
followed by a norm; a 1x1 projection shortcut when the shape changes) ->
the final feature map's positions as tokens, their mean as the pooled vector.

Normalisation is GroupNorm (no state; batch-size independent) or BatchNorm.
BatchNorm keeps running statistics in the `batch_stats` collection: the
trainer applies the model with `mutable=['batch_stats']` when training and
evaluation uses the running averages (`train=False`). Under `jit` over a
sharded batch, the batch statistics are those of the global batch.
"""

from typing import Callable, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from cmjax.models.encoders import EncoderOutput, register_encoder
from cmjax.models.layers import Dtype, conv
from cmjax.models.pixels import to_float

_CONV_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def _conv(features: int, kernel: int, stride: int, dtype: Dtype, name: str) -> nn.Conv:
  """Square `kernel` conv `[batch, H, W, in] -> [batch, H/stride, W/stride, features]`.

  No bias (a norm follows every conv) and He (fan-out) initialisation, as in ResNet.
  """
  pad = kernel // 2
  return conv(
    features,
    (kernel, kernel),
    (stride, stride),
    ((pad, pad), (pad, pad)),
    name,
    dtype,
    (None, None, "conv_in", "conv_out"),
    use_bias=False,
    kernel_init=_CONV_INIT,
  )


class ResidualBlock(nn.Module):
  """Basic block: (conv3x3-norm-relu-conv3x3-norm) + shortcut, then relu.

  `make_norm(name, channels, zero_init)` builds a norm layer; the second norm
  starts with a zero scale so that each block starts as the identity.
  """

  features: int
  stride: int
  make_norm: Callable[[str, int, bool], nn.Module]
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """`[batch, H, W, C]` -> `[batch, H/stride, W/stride, features]`."""
    y = _conv(self.features, 3, self.stride, self.dtype, "conv0")(x)
    y = nn.relu(self.make_norm("norm0", self.features, False)(y))
    y = _conv(self.features, 3, 1, self.dtype, "conv1")(y)
    y = self.make_norm("norm1", self.features, True)(y)
    if x.shape[-1] != self.features or self.stride != 1:
      x = _conv(self.features, 1, self.stride, self.dtype, "shortcut_conv")(x)
      x = self.make_norm("shortcut_norm", self.features, False)(x)
    return nn.relu(x + y)


@register_encoder("image", "resnet")
class ResNet(nn.Module):
  """ResNet-style image encoder.

  Attributes:
    features: channels of each stage; the last one is the output width.
    blocks: residual blocks in each stage (same length as `features`).
    stem_stride: stride of the 3x3 stem conv; every stage after the first
      halves H and W again, so 64x64 images with stride 2 and three stages
      give an 8x8 grid of tokens.
    norm: 'group' (GroupNorm) or 'batch' (BatchNorm, state in `batch_stats`).
    num_groups: GroupNorm groups (capped at the channel count).
    bn_momentum: BatchNorm running-average momentum.
    dtype: compute dtype.
    pixel_norm: how uint8 pixels become floats (`cmjax.models.pixels`).
  """

  features: Sequence[int] = (32, 64, 128)
  blocks: Sequence[int] = (1, 1, 1)
  stem_stride: int = 2
  norm: str = "group"
  num_groups: int = 8
  bn_momentum: float = 0.9
  dtype: Dtype = jnp.float32
  pixel_norm: str | tuple = "minus_one_one"

  @nn.compact
  def __call__(self, image: jax.Array, *, train: bool = False) -> EncoderOutput:
    """image: uint8 `[batch, H, W, 3]` (or float in [0, 1]).

    Returns EncoderOutput(tokens `[batch, h*w, features[-1]]`, pooled
    `[batch, features[-1]]`, an all-True mask `[batch, h*w]`), h = H /
    (stem_stride * 2**(len(features) - 1)).
    """
    chex.assert_rank(image, 4)
    if self.norm not in ("group", "batch"):
      raise ValueError(f"norm must be 'group' or 'batch', got {self.norm!r}")
    if len(self.features) != len(self.blocks) or not self.features:
      raise ValueError(
        f"features {tuple(self.features)} and blocks "
        f"{tuple(self.blocks)} must be non-empty and of equal length"
      )

    def make_norm(name: str, channels: int, zero_init: bool) -> nn.Module:
      scale = nn.initializers.zeros_init() if zero_init else nn.initializers.ones_init()
      kw = dict(
        dtype=self.dtype,
        name=name,
        scale_init=nn.with_logical_partitioning(scale, ("conv_out",)),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), ("conv_out",)),
      )
      if self.norm == "batch":
        return nn.BatchNorm(
          use_running_average=not train, momentum=self.bn_momentum, epsilon=1e-5, **kw
        )
      groups = min(self.num_groups, channels)
      if channels % groups:
        raise ValueError(
          f"{channels} channels do not split into {groups} GroupNorm groups (num_groups)"
        )
      return nn.GroupNorm(num_groups=groups, **kw)

    batch = image.shape[0]
    x = to_float(image, self.pixel_norm).astype(self.dtype)
    x = _conv(self.features[0], 3, self.stem_stride, self.dtype, "stem_conv")(x)
    x = nn.relu(make_norm("stem_norm", self.features[0], False)(x))
    for i, (features, blocks) in enumerate(zip(self.features, self.blocks)):
      for j in range(blocks):
        stride = 2 if (i > 0 and j == 0) else 1
        x = ResidualBlock(features, stride, make_norm, self.dtype, name=f"stage{i}_block{j}")(x)
    _, h, w, c = x.shape
    tokens = x.reshape(batch, h * w, c)
    pooled = jnp.mean(tokens, axis=1)
    chex.assert_shape(pooled, (batch, self.features[-1]))
    return EncoderOutput(tokens, pooled, jnp.ones((batch, h * w), jnp.bool_))
