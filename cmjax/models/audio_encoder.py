"""Audio Transformer: waveform `[batch, T]` + mask -> tokens and pooled vector.

wave -> log-mel (float32) -> per-utterance normalisation over valid frames ->
two stride-2 1-D convs (4x fewer frames) -> sinusoidal positions ->
Transformer with key mask -> masked mean.
"""

from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from cmjax.models import audio_features
from cmjax.models.pooling import masked_mean, sinusoidal_positions
from cmjax.models.transformer import Transformer

Dtype = Any


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


class AudioTransformer(nn.Module):
  """Speech/audio encoder on raw waveforms.

  Attributes:
    sample_rate, n_fft, hop_length, n_mels: log-mel front end.
    width, depth, num_heads, mlp_dim: Transformer sizes.
    dropout_rate: dropout inside the Transformer.
    dtype: compute dtype after the (float32) front end.
  """
  sample_rate: int = 16000
  n_fft: int = 400
  hop_length: int = 160
  n_mels: int = 64
  width: int = 128
  depth: int = 2
  num_heads: int = 4
  mlp_dim: int = 256
  dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, audio: jax.Array, audio_mask: jax.Array, *,
               train: bool = False) -> tuple[jax.Array, jax.Array]:
    """audio: float `[batch, T]`; audio_mask: bool `[batch, T]` (True = real).

    Returns (tokens `[batch, n, width]`, pooled `[batch, width]`) with
    n = ceil(ceil(frames / 2) / 2), frames = 1 + T // hop_length (even n_fft).
    """
    chex.assert_rank([audio, audio_mask], 2)
    chex.assert_equal_shape([audio, audio_mask])
    batch = audio.shape[0]
    mask = audio_mask.astype(jnp.bool_)
    # Zero masked samples: the spectrogram then cannot see what is behind them.
    wave = jnp.where(mask, audio.astype(jnp.float32), 0.0)
    feats = audio_features.log_mel_spectrogram(
        wave, sample_rate=self.sample_rate, n_fft=self.n_fft,
        hop_length=self.hop_length, n_mels=self.n_mels)
    fmask = audio_features.frame_mask(mask, self.hop_length, n_fft=self.n_fft)
    chex.assert_shape(feats, (batch, fmask.shape[1], self.n_mels))
    x = normalise_over_valid(feats, fmask).astype(self.dtype)

    # Explicit (1, 1) padding (not 'SAME') so output j always covers inputs
    # 2j-1..2j+1 whatever the sequence length: padding stays invisible.
    for i, names in enumerate([(None, 'mels', 'embed'), (None, 'conv_in', 'embed')]):
      x = nn.Conv(self.width, (3,), strides=(2,), padding=((1, 1),),
                  dtype=self.dtype, name=f'conv{i}',
                  kernel_init=nn.with_logical_partitioning(
                      nn.initializers.lecun_normal(), names),
                  bias_init=nn.with_logical_partitioning(
                      nn.initializers.zeros_init(), ('embed',)))(x)
      x = nn.gelu(x)
      fmask = subsample_mask(fmask)
      chex.assert_equal(x.shape[1], fmask.shape[1])
      x = x * fmask[..., None].astype(x.dtype)

    # Fixed positions: no maximum audio length baked into the parameters.
    x = x + sinusoidal_positions(x.shape[1], self.width).astype(self.dtype)[None]
    x = Transformer(self.depth, self.num_heads, self.mlp_dim, self.dropout_rate,
                    self.dtype, name='transformer')(x, fmask, deterministic=not train)
    pooled = masked_mean(x, fmask)
    chex.assert_shape(x, (batch, fmask.shape[1], self.width))
    chex.assert_shape(pooled, (batch, self.width))
    return x, pooled
