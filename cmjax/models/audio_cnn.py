"""Convolutional audio encoder: waveform `[batch, T]` + mask -> tokens and pooled vector.

`AudioFrontEnd` log-mel features (SpecAugment optional) -> stride-2 1-D (time) convs, each followed by a
per-frame LayerNorm and GELU -> linear map to `width` -> masked mean.

Every layer is local in time and masked frames are zeroed after each one, so
appending masked padding leaves the valid tokens and the pooled vector
unchanged (up to float round-off).
"""

from typing import Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from cmjax.models.audio_front_end import AudioFrontEnd, subsample_mask
from cmjax.models.encoders import EncoderOutput, register_encoder
from cmjax.models.layers import Dtype, conv, dense, layer_norm
from cmjax.models.pooling import masked_mean


@register_encoder("audio", "cnn")
class AudioCNN(AudioFrontEnd):
  """1-D CNN audio encoder on raw waveforms.

  Attributes:
    (front end and SpecAugment: see `AudioFrontEnd`.)
    widths: channels of the stride-2 conv layers (one layer each, so there
      are ceil(frames / 2**len(widths)) tokens).
    width: output (token and pooled) dimension.
    kernel_size: odd conv kernel size along time.
    dtype: compute dtype after the (float32) front end.
  """

  widths: Sequence[int] = (32, 64, 128)
  width: int = 128
  kernel_size: int = 3
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(
    self, audio: jax.Array, audio_mask: jax.Array, *, train: bool = False
  ) -> EncoderOutput:
    """audio: float `[batch, T]`; audio_mask: bool `[batch, T]` (True = real).

    Returns EncoderOutput(tokens `[batch, n, width]`, pooled `[batch, width]`); n is
    frames halved (rounding up) once per entry of `widths`, frames =
    1 + T // hop_length (even n_fft); mask bool `[batch, n]`. Tokens on
    masked frames are zero.
    """
    if self.kernel_size % 2 != 1:
      raise ValueError(f"kernel_size must be odd, got {self.kernel_size}")
    if not self.widths:
      raise ValueError("widths must name at least one conv layer")
    batch = audio.shape[0]
    x, fmask = self.log_mel_features(audio, audio_mask, train)
    x = x.astype(self.dtype)
    half = self.kernel_size // 2
    for i, features in enumerate(self.widths):
      # Explicit symmetric padding (not 'SAME'): output j covers inputs
      # 2j-half..2j+half whatever the length, so padding stays invisible.
      x = conv(
        features,
        (self.kernel_size,),
        (2,),
        ((half, half),),
        f"conv{i}",
        self.dtype,
        (None, "mels" if i == 0 else "conv_in", "mlp"),
      )(x)
      # Per-frame LayerNorm (no statistics across time or batch, unlike
      # BatchNorm/GroupNorm, so padding cannot leak in).
      x = layer_norm(f"norm{i}", self.dtype, axis="mlp")(x)
      x = nn.gelu(x)
      fmask = subsample_mask(fmask)
      chex.assert_equal(x.shape[1], fmask.shape[1])
      x = x * fmask[..., None].astype(x.dtype)
    x = dense(self.width, "proj", self.dtype, in_axis="conv_in", out_axis="embed")(x)
    x = x * fmask[..., None].astype(x.dtype)
    pooled = masked_mean(x, fmask)
    chex.assert_shape(x, (batch, fmask.shape[1], self.width))
    chex.assert_shape(pooled, (batch, self.width))
    return EncoderOutput(x, pooled, fmask)
