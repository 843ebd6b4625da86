"""Log-mel spectrogram in JAX, numerically matching librosa's defaults.

`mel_filterbank` follows librosa.filters.mel (Slaney mel scale, `norm='slaney'`
area normalisation); `mel_spectrogram` follows
`librosa.feature.melspectrogram(center=True, pad_mode='constant', power=2)`
with a periodic Hann window.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np

# Slaney's mel scale: linear below 1 kHz, logarithmic above.
_F_SP = 200.0 / 3.0
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOG_STEP = np.log(6.4) / 27.0


def hz_to_mel(freqs: np.ndarray) -> np.ndarray:
  """Slaney mel scale (librosa's `htk=False`)."""
  freqs = np.asarray(freqs, np.float64)
  mels = freqs / _F_SP
  log_part = _MIN_LOG_MEL + np.log(np.maximum(freqs, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOG_STEP
  return np.where(freqs >= _MIN_LOG_HZ, log_part, mels)


def mel_to_hz(mels: np.ndarray) -> np.ndarray:
  """Inverse of `hz_to_mel`."""
  mels = np.asarray(mels, np.float64)
  freqs = _F_SP * mels
  log_part = _MIN_LOG_HZ * np.exp(_LOG_STEP * (np.maximum(mels, _MIN_LOG_MEL) - _MIN_LOG_MEL))
  return np.where(mels >= _MIN_LOG_MEL, log_part, freqs)


@functools.lru_cache(maxsize=32)
def _mel_filterbank_cached(sample_rate, n_fft, n_mels, fmin, fmax):
  fmax = sample_rate / 2.0 if fmax is None else float(fmax)
  fft_freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
  # n_mels + 2 edges: filter i rises from edge i to i+1 and falls to i+2.
  edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
  widths = np.diff(edges)
  lo, hi = edges[:-2, None], edges[2:, None]
  rising = (fft_freqs[None, :] - lo) / widths[:-1, None]
  falling = (hi - fft_freqs[None, :]) / widths[1:, None]
  weights = np.maximum(0.0, np.minimum(rising, falling))
  # Slaney normalisation: every triangle has (roughly) unit area in Hz.
  weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
  weights = weights.astype(np.float32)
  weights.setflags(write=False)
  return weights


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int,
                   fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
  """Triangular mel filters, float32 `[n_mels, n_fft // 2 + 1]` (librosa layout).

  fmax defaults to the Nyquist frequency. Cached; the returned array is read-only.
  """
  return _mel_filterbank_cached(int(sample_rate), int(n_fft), int(n_mels),
                                float(fmin), None if fmax is None else float(fmax))


def num_frames(num_samples: int, n_fft: int, hop_length: int) -> int:
  """Frame count of a centred STFT (padding n_fft // 2 on both sides)."""
  return 1 + (num_samples + 2 * (n_fft // 2) - n_fft) // hop_length


def hann_window(n_fft: int) -> np.ndarray:
  """Periodic Hann window (scipy `get_window('hann', n, fftbins=True)`)."""
  return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)


def power_spectrogram(wave: jax.Array, *, n_fft: int = 400,
                      hop_length: int = 160) -> jax.Array:
  """|STFT|^2 of centred, zero-padded frames.

  Args:
    wave: float `[batch, samples]`.

  Returns:
    float32 `[batch, frames, n_fft // 2 + 1]`, frames = `num_frames(samples, ...)`.
  """
  chex.assert_rank(wave, 2)
  batch, samples = wave.shape
  wave = wave.astype(jnp.float32)
  pad = n_fft // 2
  padded = jnp.pad(wave, ((0, 0), (pad, pad)))
  frames = num_frames(samples, n_fft, hop_length)
  # Static gather indices [frames, n_fft]; cheap next to the FFT.
  idx = np.arange(frames)[:, None] * hop_length + np.arange(n_fft)[None, :]
  windowed = padded[:, idx] * hann_window(n_fft)
  spec = jnp.fft.rfft(windowed, n=n_fft, axis=-1)
  power = jnp.real(spec) ** 2 + jnp.imag(spec) ** 2
  chex.assert_shape(power, (batch, frames, n_fft // 2 + 1))
  return power


def mel_spectrogram(wave: jax.Array, *, sample_rate: int = 16000,
                    n_fft: int = 400, hop_length: int = 160, n_mels: int = 64,
                    fmin: float = 0.0, fmax: float | None = None) -> jax.Array:
  """Mel power spectrogram: `[batch, samples]` -> float32 `[batch, frames, n_mels]`."""
  power = power_spectrogram(wave, n_fft=n_fft, hop_length=hop_length)
  fb = mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax)
  # HIGHEST precision: the default may use reduced-precision passes on TPU/GPU.
  return jnp.einsum('bfk,mk->bfm', power, fb, precision=jax.lax.Precision.HIGHEST)


def log_mel_spectrogram(wave: jax.Array, *, sample_rate: int = 16000,
                        n_fft: int = 400, hop_length: int = 160,
                        n_mels: int = 64, fmin: float = 0.0,
                        fmax: float | None = None, eps: float = 1e-6) -> jax.Array:
  """log(mel power + eps): `[batch, samples]` -> float32 `[batch, frames, n_mels]`.

  Frames are centred (frame t is centred on sample t * hop_length) with zero
  padding, so frames = 1 + samples // hop_length for even n_fft.
  """
  mel = mel_spectrogram(wave, sample_rate=sample_rate, n_fft=n_fft,
                        hop_length=hop_length, n_mels=n_mels, fmin=fmin, fmax=fmax)
  return jnp.log(mel + eps)


def frame_mask(sample_mask: jax.Array, hop_length: int, *,
               n_fft: int = 400) -> jax.Array:
  """Which spectrogram frames hold real audio.

  Frame t is valid iff its centre sample t * hop_length is a valid sample, so
  appending masked padding never changes the mask of existing frames (and
  frames with no valid samples are always masked).

  Args:
    sample_mask: bool `[batch, samples]`, True on real samples.
    hop_length: STFT hop.
    n_fft: STFT size (only sets the frame count, as in `log_mel_spectrogram`).

  Returns:
    bool `[batch, frames]`.
  """
  chex.assert_rank(sample_mask, 2)
  samples = sample_mask.shape[1]
  frames = num_frames(samples, n_fft, hop_length)
  centres = np.arange(frames) * hop_length
  inside = centres < samples  # the last centre may fall in the right padding
  mask = sample_mask.astype(jnp.bool_)[:, np.minimum(centres, samples - 1)]
  return mask & jnp.asarray(inside)[None, :]
