"""Convolutional audio encoder: waveform `[batch, T]` + mask -> tokens and pooled vector.

wave -> log-mel (float32) -> per-utterance normalisation over valid frames ->
(SpecAugment in training) -> stride-2 1-D (time) convs, each followed by a
per-frame LayerNorm and GELU -> linear map to `width` -> masked mean.

Every layer is local in time and masked frames are zeroed after each one, so
appending masked padding leaves the valid tokens and the pooled vector
unchanged (up to float round-off).
"""

from typing import Any, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from cmjax.models import audio_features
from cmjax.models.audio_encoder import normalise_over_valid, subsample_mask
from cmjax.models.pooling import masked_mean

Dtype = Any


def log_mel_front_end(module: nn.Module, audio: jax.Array, audio_mask: jax.Array,
                      train: bool) -> tuple[jax.Array, jax.Array]:
  """Shared front end of the audio encoders in this file and audio_ast.py.

  `module` supplies sample_rate, n_fft, hop_length, n_mels and the
  SpecAugment settings (spec_augment, num_freq_masks, freq_mask_width,
  num_time_masks, time_mask_width). SpecAugment runs only when both `train`
  and `module.spec_augment` are true; it draws from the 'spec_augment' rng
  stream if one is given to `apply`, else from 'dropout'.

  Args:
    audio: float `[batch, T]`; audio_mask: bool `[batch, T]` (True = real).

  Returns:
    (features float32 `[batch, frames, n_mels]`, normalised and zero on
    masked frames; frame mask bool `[batch, frames]`).
  """
  chex.assert_rank([audio, audio_mask], 2)
  chex.assert_equal_shape([audio, audio_mask])
  mask = audio_mask.astype(jnp.bool_)
  # Zero masked samples: the spectrogram then cannot see what is behind them.
  wave = jnp.where(mask, audio.astype(jnp.float32), 0.0)
  feats = audio_features.log_mel_spectrogram(
      wave, sample_rate=module.sample_rate, n_fft=module.n_fft,
      hop_length=module.hop_length, n_mels=module.n_mels)
  fmask = audio_features.frame_mask(mask, module.hop_length, n_fft=module.n_fft)
  chex.assert_shape(feats, (audio.shape[0], fmask.shape[1], module.n_mels))
  x = normalise_over_valid(feats, fmask)
  if train and module.spec_augment:
    stream = 'spec_augment' if module.has_rng('spec_augment') else 'dropout'
    # Normalised features have zero mean, so zero fill is mean fill.
    x = audio_features.spec_augment(
        x, module.make_rng(stream), num_freq_masks=module.num_freq_masks,
        freq_mask_width=module.freq_mask_width, num_time_masks=module.num_time_masks,
        time_mask_width=module.time_mask_width, mask=fmask)
  return x, fmask


class AudioCNN(nn.Module):
  """1-D CNN audio encoder on raw waveforms.

  Attributes:
    sample_rate, n_fft, hop_length, n_mels: log-mel front end.
    widths: channels of the stride-2 conv layers (one layer each, so there
      are ceil(frames / 2**len(widths)) tokens).
    width: output (token and pooled) dimension.
    kernel_size: odd conv kernel size along time.
    spec_augment: apply SpecAugment to the features when train=True.
    num_freq_masks, freq_mask_width, num_time_masks, time_mask_width: its
      settings.
    dtype: compute dtype after the (float32) front end.
  """
  sample_rate: int = 16000
  n_fft: int = 400
  hop_length: int = 160
  n_mels: int = 64
  widths: Sequence[int] = (32, 64, 128)
  width: int = 128
  kernel_size: int = 3
  spec_augment: bool = False
  num_freq_masks: int = 2
  freq_mask_width: int = 8
  num_time_masks: int = 2
  time_mask_width: int = 10
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, audio: jax.Array, audio_mask: jax.Array, *,
               train: bool = False) -> tuple[jax.Array, jax.Array]:
    """audio: float `[batch, T]`; audio_mask: bool `[batch, T]` (True = real).

    Returns (tokens `[batch, n, width]`, pooled `[batch, width]`); n is
    frames halved (rounding up) once per entry of `widths`, frames =
    1 + T // hop_length (even n_fft). Tokens on masked frames are zero.
    """
    if self.kernel_size % 2 != 1:
      raise ValueError(f'kernel_size must be odd, got {self.kernel_size}')
    if not self.widths:
      raise ValueError('widths must name at least one conv layer')
    batch = audio.shape[0]
    x, fmask = log_mel_front_end(self, audio, audio_mask, train)
    x = x.astype(self.dtype)
    half = self.kernel_size // 2
    for i, features in enumerate(self.widths):
      # Explicit symmetric padding (not 'SAME'): output j covers inputs
      # 2j-half..2j+half whatever the length, so padding stays invisible.
      x = nn.Conv(features, (self.kernel_size,), strides=(2,), padding=((half, half),),
                  dtype=self.dtype, name=f'conv{i}',
                  kernel_init=nn.with_logical_partitioning(
                      nn.initializers.lecun_normal(),
                      (None, 'mels' if i == 0 else 'conv_in', 'mlp')),
                  bias_init=nn.with_logical_partitioning(
                      nn.initializers.zeros_init(), ('mlp',)))(x)
      # Per-frame LayerNorm (no statistics across time or batch, unlike
      # BatchNorm/GroupNorm, so padding cannot leak in).
      x = nn.LayerNorm(
          dtype=self.dtype, name=f'norm{i}',
          scale_init=nn.with_logical_partitioning(nn.initializers.ones_init(), ('mlp',)),
          bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), ('mlp',)))(x)
      x = nn.gelu(x)
      fmask = subsample_mask(fmask)
      chex.assert_equal(x.shape[1], fmask.shape[1])
      x = x * fmask[..., None].astype(x.dtype)
    x = nn.Dense(self.width, dtype=self.dtype, name='proj',
                 kernel_init=nn.with_logical_partitioning(
                     nn.initializers.lecun_normal(), ('conv_in', 'embed')),
                 bias_init=nn.with_logical_partitioning(
                     nn.initializers.zeros_init(), ('embed',)))(x)
    x = x * fmask[..., None].astype(x.dtype)
    pooled = masked_mean(x, fmask)
    chex.assert_shape(x, (batch, fmask.shape[1], self.width))
    chex.assert_shape(pooled, (batch, self.width))
    return x, pooled
