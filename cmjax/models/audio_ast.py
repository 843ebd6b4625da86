"""Audio Spectrogram Transformer (AST-style): waveform `[batch, T]` -> tokens, pooled.

`AudioFrontEnd` log-mel features (SpecAugment optional) -> the `[frames, n_mels]` spectrogram as a
one-channel image cut into non-overlapping (patch_time x patch_freq) patches ->
linear patch embedding + learned frequency positions + sinusoidal time
positions -> Transformer with a key mask over patches holding no valid frame ->
masked mean.

Tokens are ordered time-major (all frequency patches of the first time step,
then the next), so a prefix frame mask gives a prefix (right-padded) token
mask and appending masked audio only appends masked tokens.
"""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from cmjax.models.audio_front_end import AudioFrontEnd
from cmjax.models.encoders import EncoderOutput, register_encoder
from cmjax.models.layers import Dtype, patch_embed
from cmjax.models.pooling import masked_mean, sinusoidal_positions
from cmjax.models.transformer import Transformer


def patch_mask(frame_mask: jax.Array, patch_time: int, freq_patches: int) -> jax.Array:
  """Token mask of time-major patches: valid iff its time span has a valid frame.

  Args:
    frame_mask: bool `[batch, frames]`, frames a multiple of patch_time.
    patch_time: frames per patch.
    freq_patches: patches per time step.

  Returns:
    bool `[batch, (frames / patch_time) * freq_patches]`.
  """
  chex.assert_rank(frame_mask, 2)
  batch, frames = frame_mask.shape
  if frames % patch_time:
    raise ValueError(f"{frames} frames are not a multiple of patch_time {patch_time}")
  steps = frames // patch_time
  per_step = jnp.any(frame_mask.reshape(batch, steps, patch_time), axis=-1)
  return jnp.repeat(per_step, freq_patches, axis=1)


@register_encoder("audio", "ast")
class AudioSpectrogramViT(AudioFrontEnd):
  """AST-style encoder on raw waveforms.

  Attributes:
    (front end and SpecAugment: see `AudioFrontEnd`.)
    patch_time, patch_freq: patch size in frames and mel bins (n_mels must be
      a multiple of patch_freq; frames are zero padded up to a multiple of
      patch_time).
    width, depth, num_heads, mlp_dim: Transformer sizes.
    dropout_rate: dropout inside the Transformer.
    dtype: compute dtype after the (float32) front end.
  """

  patch_time: int = 4
  patch_freq: int = 16
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
    n = ceil(frames / patch_time) * (n_mels / patch_freq), frames =
    1 + T // hop_length (even n_fft); mask bool `[batch, n]` is False on
    patches holding no valid frame.
    """
    pt, pf = self.patch_time, self.patch_freq
    if self.n_mels % pf:
      raise ValueError(f"n_mels {self.n_mels} is not a multiple of patch_freq {pf}")
    batch = audio.shape[0]
    x, fmask = self.log_mel_features(audio, audio_mask, train)
    extra = -x.shape[1] % pt
    x = jnp.pad(x, ((0, 0), (0, extra), (0, 0)))
    fmask = jnp.pad(fmask, ((0, 0), (0, extra)))
    steps, freq_patches = x.shape[1] // pt, self.n_mels // pf
    # The spectrogram as a one-channel image `[batch, frames, n_mels, 1]`.
    x = patch_embed(self.width, (pt, pf), "patch_embed", self.dtype)(
      x.astype(self.dtype)[..., None]
    )
    chex.assert_shape(x, (batch, steps, freq_patches, self.width))
    # Frequency positions are learned (the mel axis has a fixed size); time
    # positions are fixed, so no maximum audio length is baked in.
    freq_pos = self.param(
      "freq_pos_embedding",
      nn.with_logical_partitioning(nn.initializers.normal(0.02), ("pos", "embed")),
      (freq_patches, self.width),
    )
    time_pos = sinusoidal_positions(steps, self.width)
    x = x + freq_pos.astype(self.dtype)[None, None] + time_pos.astype(self.dtype)[None, :, None]
    x = x.reshape(batch, steps * freq_patches, self.width)
    tmask = patch_mask(fmask, pt, freq_patches)
    x = Transformer(
      self.depth,
      self.num_heads,
      self.mlp_dim,
      self.dropout_rate,
      self.dtype,
      remat=self.remat,
      name="transformer",
    )(x, tmask, deterministic=not train)
    pooled = masked_mean(x, tmask)
    chex.assert_shape(x, (batch, steps * freq_patches, self.width))
    chex.assert_shape(pooled, (batch, self.width))
    return EncoderOutput(x, pooled, tmask)
