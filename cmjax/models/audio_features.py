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


def mel_filterbank(
  sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None
) -> np.ndarray:
  """Triangular mel filters, float32 `[n_mels, n_fft // 2 + 1]` (librosa layout).

  fmax defaults to the Nyquist frequency. Cached; the returned array is read-only.
  """
  return _mel_filterbank_cached(
    int(sample_rate), int(n_fft), int(n_mels), float(fmin), None if fmax is None else float(fmax)
  )


def num_frames(num_samples: int, n_fft: int, hop_length: int) -> int:
  """Frame count of a centred STFT (padding n_fft // 2 on both sides)."""
  return 1 + (num_samples + 2 * (n_fft // 2) - n_fft) // hop_length


def hann_window(n_fft: int) -> np.ndarray:
  """Periodic Hann window (scipy `get_window('hann', n, fftbins=True)`)."""
  return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)


def power_spectrogram(wave: jax.Array, *, n_fft: int = 400, hop_length: int = 160) -> jax.Array:
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


def mel_spectrogram(
  wave: jax.Array,
  *,
  sample_rate: int = 16000,
  n_fft: int = 400,
  hop_length: int = 160,
  n_mels: int = 64,
  fmin: float = 0.0,
  fmax: float | None = None,
) -> jax.Array:
  """Mel power spectrogram: `[batch, samples]` -> float32 `[batch, frames, n_mels]`."""
  power = power_spectrogram(wave, n_fft=n_fft, hop_length=hop_length)
  fb = mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax)
  # HIGHEST precision: the default may use reduced-precision passes on TPU/GPU.
  return jnp.einsum("bfk,mk->bfm", power, fb, precision=jax.lax.Precision.HIGHEST)


def log_mel_spectrogram(
  wave: jax.Array,
  *,
  sample_rate: int = 16000,
  n_fft: int = 400,
  hop_length: int = 160,
  n_mels: int = 64,
  fmin: float = 0.0,
  fmax: float | None = None,
  eps: float = 1e-6,
) -> jax.Array:
  """log(mel power + eps): `[batch, samples]` -> float32 `[batch, frames, n_mels]`.

  Frames are centred (frame t is centred on sample t * hop_length) with zero
  padding, so frames = 1 + samples // hop_length for even n_fft.
  """
  mel = mel_spectrogram(
    wave,
    sample_rate=sample_rate,
    n_fft=n_fft,
    hop_length=hop_length,
    n_mels=n_mels,
    fmin=fmin,
    fmax=fmax,
  )
  return jnp.log(mel + eps)


def frame_mask(sample_mask: jax.Array, hop_length: int, *, n_fft: int = 400) -> jax.Array:
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


@functools.lru_cache(maxsize=32)
def _dct_matrix_cached(n: int, n_out: int) -> np.ndarray:
  k = np.arange(n_out, dtype=np.float64)[:, None]
  i = np.arange(n, dtype=np.float64)[None, :]
  basis = np.cos(np.pi * k * (2.0 * i + 1.0) / (2.0 * n))
  # Orthonormal scaling: sqrt(1/n) for k = 0, sqrt(2/n) otherwise.
  scale = np.full((n_out, 1), np.sqrt(2.0 / n))
  scale[0] = np.sqrt(1.0 / n)
  weights = (basis * scale).T.astype(np.float32)
  weights.setflags(write=False)
  return weights


def dct_matrix(n: int, n_out: int | None = None) -> np.ndarray:
  """Orthonormal DCT-II as a float32 matrix `[n, n_out]` (first n_out coefficients).

  `x @ dct_matrix(n)` equals `scipy.fft.dct(x, type=2, norm='ortho', axis=-1)`
  for `x` of shape `[..., n]`. Cached; the returned array is read-only.
  """
  n_out = n if n_out is None else n_out
  if not 0 < n_out <= n:
    raise ValueError(f"need 0 < n_out <= n, got n={n}, n_out={n_out}")
  return _dct_matrix_cached(int(n), int(n_out))


def power_to_db(power: jax.Array, *, amin: float = 1e-10, top_db: float | None = 80.0) -> jax.Array:
  """10 log10(max(power, amin)), as librosa's `power_to_db(ref=1.0)`.

  Args:
    power: float `[batch, ...]`, non-negative.
    amin: floor on the power before the log.
    top_db: if given, values below (per-utterance max - top_db) are raised to
      it; the max is taken over all non-batch axes of each row.

  Returns:
    float32, same shape.
  """
  power = power.astype(jnp.float32)
  db = 10.0 * jnp.log10(jnp.maximum(power, amin))
  if top_db is not None:
    if top_db < 0:
      raise ValueError(f"top_db must be non-negative, got {top_db}")
    axes = tuple(range(1, db.ndim))
    db = jnp.maximum(db, jnp.max(db, axis=axes, keepdims=True) - top_db)
  return db


def mfcc(
  wave: jax.Array,
  *,
  sample_rate: int = 16000,
  n_mfcc: int = 13,
  n_fft: int = 400,
  hop_length: int = 160,
  n_mels: int = 64,
  fmin: float = 0.0,
  fmax: float | None = None,
  top_db: float | None = 80.0,
) -> jax.Array:
  """Mel-frequency cepstral coefficients, as `librosa.feature.mfcc`.

  Power mel spectrogram (centred, zero padded) -> dB (`amin=1e-10`, ref 1,
  clamped to `top_db` below each utterance's own maximum) -> orthonormal
  DCT-II over the mel axis, first n_mfcc coefficients. librosa applies
  `top_db` relative to the maximum of the whole array it is given, so a batch
  matches librosa called on one utterance at a time.

  Args:
    wave: float `[batch, samples]`.

  Returns:
    float32 `[batch, frames, n_mfcc]`, frames = `num_frames(samples, ...)`.
  """
  chex.assert_rank(wave, 2)
  mel = mel_spectrogram(
    wave,
    sample_rate=sample_rate,
    n_fft=n_fft,
    hop_length=hop_length,
    n_mels=n_mels,
    fmin=fmin,
    fmax=fmax,
  )
  db = power_to_db(mel, top_db=top_db)
  out = jnp.einsum(
    "bfm,mc->bfc", db, dct_matrix(n_mels, n_mfcc), precision=jax.lax.Precision.HIGHEST
  )
  chex.assert_shape(out, (wave.shape[0], mel.shape[1], n_mfcc))
  return out


def _band_mask(
  rng: jax.Array,
  batch: int,
  size: int,
  num: int,
  max_width: int,
  limit: jax.Array | None,
  random_widths: bool,
) -> jax.Array:
  """bool `[batch, size]`: union of `num` random bands of (at most) max_width.

  Band starts are uniform over [0, limit - width] (limit defaults to size), so
  bands lie inside the first `limit` positions whenever they fit there.
  """
  k_width, k_start = jax.random.split(rng)
  if random_widths:
    widths = jax.random.randint(k_width, (batch, num), 0, max_width + 1)
  else:
    widths = jnp.full((batch, num), max_width, jnp.int32)
  limit = jnp.full((batch,), size, jnp.int32) if limit is None else limit
  room = jnp.maximum(limit[:, None] - widths, 0)  # largest start, [batch, num]
  u = jax.random.uniform(k_start, (batch, num))
  starts = jnp.minimum(jnp.floor(u * (room + 1)).astype(jnp.int32), room)
  pos = jnp.arange(size)[None, None, :]
  bands = (pos >= starts[..., None]) & (pos < (starts + widths)[..., None])
  return jnp.any(bands, axis=1)


def spec_augment(
  features: jax.Array,
  rng: jax.Array,
  *,
  num_freq_masks: int = 2,
  freq_mask_width: int = 8,
  num_time_masks: int = 2,
  time_mask_width: int = 10,
  mask: jax.Array | None = None,
  random_widths: bool = False,
  fill: str = "zero",
) -> jax.Array:
  """SpecAugment frequency and time masking (Park et al., 2019), no time warp.

  Every utterance gets its own `num_freq_masks` bands of `freq_mask_width`
  consecutive channels and `num_time_masks` spans of `time_mask_width`
  consecutive frames (bands may overlap); masked entries are replaced by
  `fill`. Counts and widths are static, so this jits; the result is a pure
  function of `rng`. Apply it in training only.

  Args:
    features: float `[batch, frames, channels]`.
    rng: PRNG key.
    num_freq_masks, freq_mask_width: frequency bands per utterance and width.
    num_time_masks, time_mask_width: time spans per utterance and width.
    mask: optional bool `[batch, frames]` (True = valid, a prefix); time spans
      are then placed inside the valid frames and 'mean' averages only them.
    random_widths: draw each width uniformly from [0, max width] (the paper's
      recipe) instead of using the width itself.
    fill: 'zero', or 'mean' (each utterance's mean over its valid entries).

  Returns:
    features with the bands filled, same shape and dtype.
  """
  chex.assert_rank(features, 3)
  if fill not in ("zero", "mean"):
    raise ValueError(f"fill must be 'zero' or 'mean', got {fill!r}")
  for name, value in [
    ("num_freq_masks", num_freq_masks),
    ("freq_mask_width", freq_mask_width),
    ("num_time_masks", num_time_masks),
    ("time_mask_width", time_mask_width),
  ]:
    if value < 0:
      raise ValueError(f"{name} must be non-negative, got {value}")
  batch, frames, channels = features.shape
  if mask is not None:
    chex.assert_shape(mask, (batch, frames))
  do_freq = num_freq_masks > 0 and freq_mask_width > 0
  do_time = num_time_masks > 0 and time_mask_width > 0
  if not (do_freq or do_time):
    return features
  k_freq, k_time = jax.random.split(rng)
  hidden = jnp.zeros((batch, frames, channels), jnp.bool_)
  if do_freq:
    bands = _band_mask(
      k_freq, batch, channels, num_freq_masks, min(freq_mask_width, channels), None, random_widths
    )
    hidden = hidden | bands[:, None, :]
  if do_time:
    limit = None if mask is None else jnp.sum(mask.astype(jnp.int32), axis=1)
    spans = _band_mask(
      k_time, batch, frames, num_time_masks, min(time_mask_width, frames), limit, random_widths
    )
    hidden = hidden | spans[:, :, None]
  if fill == "zero":
    value = jnp.zeros((), features.dtype)
  else:
    w = jnp.ones((batch, frames), jnp.float32) if mask is None else mask.astype(jnp.float32)
    total = jnp.sum(features.astype(jnp.float32) * w[..., None], axis=(1, 2))
    count = jnp.maximum(jnp.sum(w, axis=1) * channels, 1.0)
    value = (total / count).astype(features.dtype)[:, None, None]
  return jnp.where(hidden, value, features)
