"""The log-mel front end shared by every audio encoder, and its mask helpers.

`AudioFrontEnd` is a base module: the audio encoders subclass it, so they all
take the same front-end config keys (sample_rate, n_fft, hop_length, n_mels,
SpecAugment settings) and compute features the same way:

wave (masked samples zeroed) -> log-mel (float32) -> per-utterance
normalisation over valid frames -> SpecAugment (training only, if enabled).
"""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from cmjax.models import audio_features


def normalise_over_valid(x: jax.Array, mask: jax.Array, eps: float = 1e-5) -> jax.Array:
  """Per-utterance, per-channel mean/variance normalisation over valid frames.

  x: `[batch, frames, channels]`; mask: bool `[batch, frames]`. Invalid frames
  are set to zero so that they look exactly like convolution padding.
  """
  w = mask.astype(x.dtype)[..., None]
  count = jnp.maximum(jnp.sum(w, axis=1, keepdims=True), 1.0)
  mean = jnp.sum(x * w, axis=1, keepdims=True) / count
  var = jnp.sum(jnp.square(x - mean) * w, axis=1, keepdims=True) / count
  return (x - mean) * jax.lax.rsqrt(var + eps) * w


def subsample_mask(mask: jax.Array) -> jax.Array:
  """Mask after a stride-2 conv: output j is centred on input 2j."""
  return mask[:, ::2]


class AudioFrontEnd(nn.Module):
  """Base of the audio encoders: front-end settings and `log_mel_features`.

  Attributes:
    sample_rate, n_fft, hop_length, n_mels: log-mel front end.
    spec_augment: apply SpecAugment to the features when train=True; it draws
      from the 'spec_augment' rng stream if `apply` is given one, else from
      'dropout'.
    num_freq_masks, freq_mask_width, num_time_masks, time_mask_width: its
      settings.
  """

  sample_rate: int = 16000
  n_fft: int = 400
  hop_length: int = 160
  n_mels: int = 64
  spec_augment: bool = False
  num_freq_masks: int = 2
  freq_mask_width: int = 8
  num_time_masks: int = 2
  time_mask_width: int = 10

  def log_mel_features(
    self, audio: jax.Array, audio_mask: jax.Array, train: bool
  ) -> tuple[jax.Array, jax.Array]:
    """audio: float `[batch, T]`; audio_mask: bool `[batch, T]` (True = real).

    Returns (features float32 `[batch, frames, n_mels]`, normalised and zero
    on masked frames; frame mask bool `[batch, frames]`), frames =
    1 + T // hop_length for even n_fft.
    """
    chex.assert_rank([audio, audio_mask], 2)
    chex.assert_equal_shape([audio, audio_mask])
    mask = audio_mask.astype(jnp.bool_)
    # Zero masked samples: the spectrogram then cannot see what is behind them.
    wave = jnp.where(mask, audio.astype(jnp.float32), 0.0)
    feats = audio_features.log_mel_spectrogram(
      wave,
      sample_rate=self.sample_rate,
      n_fft=self.n_fft,
      hop_length=self.hop_length,
      n_mels=self.n_mels,
    )
    fmask = audio_features.frame_mask(mask, self.hop_length, n_fft=self.n_fft)
    chex.assert_shape(feats, (audio.shape[0], fmask.shape[1], self.n_mels))
    x = normalise_over_valid(feats, fmask)
    if train and self.spec_augment:
      stream = "spec_augment" if self.has_rng("spec_augment") else "dropout"
      # Normalised features have zero mean, so zero fill is mean fill.
      x = audio_features.spec_augment(
        x,
        self.make_rng(stream),
        num_freq_masks=self.num_freq_masks,
        freq_mask_width=self.freq_mask_width,
        num_time_masks=self.num_time_masks,
        time_mask_width=self.time_mask_width,
        mask=fmask,
      )
    return x, fmask
