"""Video encoders: video `[batch, frames, H, W, 3]` -> tokens and pooled vector.

* `FrameTransformer` ('frames'): any registered image encoder embeds every
  frame (shared weights), then a Transformer over time mixes the per-frame
  vectors (factorised space-then-time, as in ViViT's "factorised encoder").
* `TubeletViT` ('tubelet_vit'): the clip is cut into non-overlapping
  `tubelet_frames x patch_size x patch_size` tubes, each embedded linearly
  (ViViT's tubelet embedding), and one Transformer attends over all of them.
"""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from cmjax.models.encoders import EncoderOutput, build_encoder, register_encoder
from cmjax.models.layers import Dtype, dense, patch_embed
from cmjax.models.pixels import to_float
from cmjax.models.pooling import sinusoidal_positions
from cmjax.models.transformer import Transformer


@register_encoder("video", "frames")
class FrameTransformer(nn.Module):
  """Per-frame image encoder + temporal Transformer.

  Attributes:
    frame_encoder: config of the image encoder applied to each frame, with an
      optional 'name' (default 'vit'), e.g. dict(name='resnet', ...).
    width, depth, num_heads, mlp_dim: temporal Transformer sizes.
    dropout_rate: dropout inside the temporal Transformer.
    dtype: compute dtype.
  """

  frame_encoder: dict | None = None
  width: int = 128
  depth: int = 1
  num_heads: int = 4
  mlp_dim: int = 256
  dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32
  remat: bool | str = False  # transformer.remat_block: False, 'full' or 'dots'

  @nn.compact
  def __call__(self, video: jax.Array, *, train: bool = False) -> EncoderOutput:
    """video: uint8 `[batch, F, H, W, 3]` (or float in [0, 1]).

    Returns EncoderOutput(tokens `[batch, F, width]` (one per frame), pooled
    `[batch, width]` (their mean), an all-True mask `[batch, F]`).
    """
    chex.assert_rank(video, 5)
    batch, frames = video.shape[:2]
    encoder = build_encoder("image", self.frame_encoder, dtype=self.dtype, name="frame_encoder")
    # Frames fold into the batch: one image-encoder call for the whole clip.
    per_frame = encoder(video.reshape((batch * frames,) + video.shape[2:]), train=train).pooled
    x = per_frame.reshape(batch, frames, per_frame.shape[-1])
    x = dense(self.width, "frame_proj", self.dtype, in_axis="conv_in", out_axis="embed")(x)
    # Fixed positions: the frame count is not baked into the parameters.
    x = x + sinusoidal_positions(frames, self.width).astype(self.dtype)[None]
    x = Transformer(
      self.depth,
      self.num_heads,
      self.mlp_dim,
      self.dropout_rate,
      self.dtype,
      remat=self.remat,
      name="temporal_transformer",
    )(x, deterministic=not train)
    pooled = jnp.mean(x, axis=1)
    chex.assert_shape(x, (batch, frames, self.width))
    return EncoderOutput(x, pooled, jnp.ones((batch, frames), jnp.bool_))


@register_encoder("video", "tubelet_vit")
class TubeletViT(nn.Module):
  """ViT over spatio-temporal tubelets.

  Attributes:
    tubelet_frames: frames per tubelet (F must be a multiple).
    patch_size: tubelet side in pixels (H and W must be multiples).
    width, depth, num_heads, mlp_dim: Transformer sizes.
    dropout_rate: dropout inside the Transformer.
    dtype: compute dtype.
    pixel_norm: how uint8 pixels become floats (`cmjax.models.pixels`).
  """

  tubelet_frames: int = 2
  patch_size: int = 8
  width: int = 128
  depth: int = 2
  num_heads: int = 4
  mlp_dim: int = 256
  dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32
  remat: bool | str = False  # transformer.remat_block: False, 'full' or 'dots'
  pixel_norm: str | tuple = "minus_one_one"

  @nn.compact
  def __call__(self, video: jax.Array, *, train: bool = False) -> EncoderOutput:
    """video: uint8 `[batch, F, H, W, 3]` (or float in [0, 1]).

    Returns EncoderOutput(tokens `[batch, n, width]`, pooled `[batch, width]`,
    an all-True mask `[batch, n]`), n = (F/t)(H/p)(W/p), ordered time-major.
    """
    chex.assert_rank(video, 5)
    batch, f, h, w, _ = video.shape
    t, p = self.tubelet_frames, self.patch_size
    if f % t or h % p or w % p:
      raise ValueError(
        f"video of {f} frames of {h}x{w} does not split into "
        f"tubelets of {t} frames x {p}x{p} pixels "
        "(tubelet_frames, patch_size)"
      )
    x = to_float(video, self.pixel_norm).astype(self.dtype)
    x = patch_embed(self.width, (t, p, p), "tubelet_embed", self.dtype)(x)
    steps, space = f // t, (h // p) * (w // p)
    x = x.reshape(batch, steps, space, self.width)
    # Factorised positions: learned over space, fixed (sinusoidal) over time.
    space_pos = self.param(
      "space_pos_embedding",
      nn.with_logical_partitioning(nn.initializers.normal(0.02), ("pos", "embed")),
      (space, self.width),
    )
    time_pos = sinusoidal_positions(steps, self.width)
    x = x + space_pos.astype(self.dtype)[None, None] + time_pos.astype(self.dtype)[None, :, None]
    x = x.reshape(batch, steps * space, self.width)
    x = Transformer(
      self.depth,
      self.num_heads,
      self.mlp_dim,
      self.dropout_rate,
      self.dtype,
      remat=self.remat,
      name="transformer",
    )(x, deterministic=not train)
    pooled = jnp.mean(x, axis=1)
    return EncoderOutput(x, pooled, jnp.ones(x.shape[:2], jnp.bool_))
