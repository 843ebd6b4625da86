"""Audio Transformer: waveform `[batch, T]` + mask -> tokens and pooled vector.

`AudioFrontEnd` log-mel features (SpecAugment optional) -> two stride-2 1-D convs (4x fewer frames) -> sinusoidal positions ->
Transformer with key mask -> masked mean.
"""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from cmjax.models.audio_front_end import AudioFrontEnd, subsample_mask
from cmjax.models.encoders import EncoderOutput, register_encoder
from cmjax.models.layers import Dtype, conv
from cmjax.models.pooling import masked_mean, sinusoidal_positions
from cmjax.models.transformer import Transformer


@register_encoder("audio", "transformer")
class AudioTransformer(AudioFrontEnd):
  """Speech/audio encoder on raw waveforms.

  Attributes:
    (front end: see `AudioFrontEnd`.)
    width, depth, num_heads, mlp_dim: Transformer sizes.
    dropout_rate: dropout inside the Transformer.
    dtype: compute dtype after the (float32) front end.
  """

  width: int = 128
  depth: int = 2
  num_heads: int = 4
  mlp_dim: int = 256
  dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32
  remat: bool | str = False  # transformer.remat_block: False, 'full' or 'dots'

  @nn.compact
  def __call__(
    self, audio: jax.Array, audio_mask: jax.Array, *, train: bool = False
  ) -> EncoderOutput:
    """audio: float `[batch, T]`; audio_mask: bool `[batch, T]` (True = real).

    Returns EncoderOutput(tokens `[batch, n, width]`, pooled `[batch, width]`) with
    n = ceil(ceil(frames / 2) / 2), frames = 1 + T // hop_length (even n_fft),
    and mask bool `[batch, n]` (valid tokens).
    """
    batch = audio.shape[0]
    x, fmask = self.log_mel_features(audio, audio_mask, train)
    x = x.astype(self.dtype)

    # Explicit (1, 1) padding (not 'SAME') so output j always covers inputs
    # 2j-1..2j+1 whatever the sequence length: padding stays invisible.
    for i, names in enumerate([(None, "mels", "embed"), (None, "conv_in", "embed")]):
      x = conv(self.width, (3,), (2,), ((1, 1),), f"conv{i}", self.dtype, names)(x)
      x = nn.gelu(x)
      fmask = subsample_mask(fmask)
      chex.assert_equal(x.shape[1], fmask.shape[1])
      x = x * fmask[..., None].astype(x.dtype)

    # Fixed positions: no maximum audio length baked into the parameters.
    x = x + sinusoidal_positions(x.shape[1], self.width).astype(self.dtype)[None]
    x = Transformer(
      self.depth,
      self.num_heads,
      self.mlp_dim,
      self.dropout_rate,
      self.dtype,
      remat=self.remat,
      name="transformer",
    )(x, fmask, deterministic=not train)
    pooled = masked_mean(x, fmask)
    chex.assert_shape(x, (batch, fmask.shape[1], self.width))
    chex.assert_shape(pooled, (batch, self.width))
    return EncoderOutput(x, pooled, fmask)
