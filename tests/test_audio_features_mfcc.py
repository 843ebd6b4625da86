"""MFCC against librosa and SpecAugment masking."""

import jax
import jax.numpy as jnp
import librosa
import numpy as np
import pytest
import scipy.fft

from cmjax.models import audio_features as af


@pytest.mark.parametrize("n,n_out", [(48, 13), (64, 64), (7, 3)])
def test_dct_matrix_matches_scipy(n, n_out):
  x = np.random.default_rng(0).standard_normal((5, n))
  got = x @ af.dct_matrix(n, n_out).astype(np.float64)
  want = scipy.fft.dct(x, type=2, norm="ortho", axis=-1)[:, :n_out]
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  full = af.dct_matrix(n).astype(np.float64)
  np.testing.assert_allclose(full.T @ full, np.eye(n), atol=1e-5)  # orthonormal
  with pytest.raises(ValueError):
    af.dct_matrix(n, n + 1)


def _waves(samples, seed=0):
  """Rows of very different loudness; one has a loud tone over faint noise."""
  rng = np.random.default_rng(seed)
  t = np.arange(samples) / 16000
  noise = rng.standard_normal((4, samples))
  waves = np.stack(
    [
      0.5 * noise[0],
      1e-3 * noise[1],
      0.9 * np.sin(2 * np.pi * 440 * t) + 1e-4 * noise[2],
      0.05 * noise[3] * np.linspace(0.0, 1.0, samples),  # fade in from silence
    ]
  )
  return waves.astype(np.float32)


@pytest.mark.parametrize(
  "samples,n_fft,hop,n_mels,n_mfcc,fmin,fmax",
  [
    (4000, 400, 160, 40, 13, 0.0, None),
    (3333, 512, 128, 48, 20, 20.0, 7600.0),
  ],
)
def test_mfcc_matches_librosa(samples, n_fft, hop, n_mels, n_mfcc, fmin, fmax):
  waves = _waves(samples)
  got = np.asarray(
    jax.jit(
      lambda w: af.mfcc(
        w,
        sample_rate=16000,
        n_mfcc=n_mfcc,
        n_fft=n_fft,
        hop_length=hop,
        n_mels=n_mels,
        fmin=fmin,
        fmax=fmax,
      )
    )(waves)
  )
  # librosa's top_db clamp is relative to the max of the array it is given:
  # call it per utterance.
  want = np.stack(
    [
      librosa.feature.mfcc(
        y=w.astype(np.float64),
        sr=16000,
        n_mfcc=n_mfcc,
        n_fft=n_fft,
        hop_length=hop,
        n_mels=n_mels,
        fmin=fmin,
        fmax=fmax,
        center=True,
        pad_mode="constant",
      ).T
      for w in waves
    ]
  )
  assert got.shape == want.shape == (4, af.num_frames(samples, n_fft, hop), n_mfcc)
  # Values in the hundreds (dB scale): float32 round-off is ~1e-4 absolute.
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)
  # The per-utterance clamp matters: clamping at 80 dB below the whole batch's
  # maximum (as librosa < 1.0 did for a batched call) changes the quiet row.
  # Built by hand so that the check does not depend on the librosa version.
  mel = librosa.feature.melspectrogram(
    y=waves.astype(np.float64),
    sr=16000,
    n_fft=n_fft,
    hop_length=hop,
    n_mels=n_mels,
    fmin=fmin,
    fmax=fmax,
    center=True,
    pad_mode="constant",
  )
  db = librosa.power_to_db(mel, top_db=None)
  batch_clamped = np.maximum(db, db.max() - 80.0)
  batched = scipy.fft.dct(batch_clamped, type=2, norm="ortho", axis=-2)[:, :n_mfcc]
  assert np.abs(batched.swapaxes(1, 2)[1] - got[1]).max() > 1.0


def test_mfcc_without_top_db():
  waves = _waves(2000)[:2]
  got = np.asarray(af.mfcc(waves, n_mfcc=13, n_fft=400, hop_length=160, n_mels=32, top_db=None))
  # librosa.feature.mfcc fixes top_db=80; build the unclamped reference by hand.
  mel = librosa.feature.melspectrogram(
    y=waves.astype(np.float64),
    sr=16000,
    n_fft=400,
    hop_length=160,
    n_mels=32,
    center=True,
    pad_mode="constant",
  )
  want = scipy.fft.dct(librosa.power_to_db(mel, top_db=None), type=2, norm="ortho", axis=-2)[
    :, :13
  ].swapaxes(1, 2)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)


def _ones(batch=3, frames=40, channels=24):
  return jnp.ones((batch, frames, channels), jnp.float32)


def _runs(flags):
  """Lengths of the runs of True in a 1-D bool array."""
  padded = np.concatenate([[0], flags.astype(int), [0]])
  d = np.diff(padded)
  return np.flatnonzero(d == -1) - np.flatnonzero(d == 1)


def test_spec_augment_single_bands_have_exact_width():
  x = _ones()
  out = np.asarray(
    af.spec_augment(
      x,
      jax.random.PRNGKey(0),
      num_freq_masks=1,
      freq_mask_width=5,
      num_time_masks=1,
      time_mask_width=7,
    )
  )
  for row in out:
    zero_cols = np.all(row == 0, axis=0)  # masked channels: zero at every frame
    zero_rows = np.all(row == 0, axis=1)  # masked frames: zero in every channel
    np.testing.assert_array_equal(_runs(zero_cols), [5])
    np.testing.assert_array_equal(_runs(zero_rows), [7])
    # Nothing else is touched.
    assert np.all((row == 0) == (zero_cols[None, :] | zero_rows[:, None]))


def test_spec_augment_several_bands():
  x = _ones(batch=16)
  out = np.asarray(
    af.spec_augment(
      x,
      jax.random.PRNGKey(1),
      num_freq_masks=2,
      freq_mask_width=3,
      num_time_masks=3,
      time_mask_width=4,
    )
  )
  n_cols = np.all(out == 0, axis=1).sum(-1)
  n_rows = np.all(out == 0, axis=2).sum(-1)
  # Bands may overlap, so between one and all of them show.
  assert np.all((3 <= n_cols) & (n_cols <= 6)) and np.all((4 <= n_rows) & (n_rows <= 12))
  assert n_cols.max() == 6 and n_rows.max() == 12  # non-overlapping cases exist
  # Rows of the batch get different bands.
  assert len({np.all(o == 0, axis=0).tobytes() for o in out}) > 1


def test_spec_augment_random_widths_bounded():
  out = np.asarray(
    af.spec_augment(
      _ones(batch=32),
      jax.random.PRNGKey(2),
      num_freq_masks=1,
      freq_mask_width=6,
      num_time_masks=1,
      time_mask_width=9,
      random_widths=True,
    )
  )
  n_cols = np.all(out == 0, axis=1).sum(-1)
  n_rows = np.all(out == 0, axis=2).sum(-1)
  assert n_cols.max() <= 6 and n_rows.max() <= 9
  assert len(set(n_cols.tolist())) > 1  # widths actually vary


def test_spec_augment_rng_determinism_and_jit():
  x = jax.random.normal(jax.random.PRNGKey(5), (2, 40, 24))
  kw = dict(num_freq_masks=2, freq_mask_width=4, num_time_masks=2, time_mask_width=5)
  fn = jax.jit(lambda f, k: af.spec_augment(f, k, **kw))
  a = np.asarray(fn(x, jax.random.PRNGKey(0)))
  b = np.asarray(fn(x, jax.random.PRNGKey(0)))
  c = np.asarray(fn(x, jax.random.PRNGKey(1)))
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  np.testing.assert_array_equal(a, np.asarray(af.spec_augment(x, jax.random.PRNGKey(0), **kw)))
  # Unmasked entries are untouched.
  keep = a != 0
  np.testing.assert_array_equal(a[keep], np.asarray(x)[keep])


def test_spec_augment_identity_when_widths_zero():
  x = jax.random.normal(jax.random.PRNGKey(3), (2, 30, 16))
  out = af.spec_augment(x, jax.random.PRNGKey(0), freq_mask_width=0, time_mask_width=0)
  np.testing.assert_array_equal(np.asarray(out), np.asarray(x))
  out = af.spec_augment(x, jax.random.PRNGKey(0), num_freq_masks=0, num_time_masks=0)
  np.testing.assert_array_equal(np.asarray(out), np.asarray(x))


def test_spec_augment_time_masks_stay_in_valid_frames_and_mean_fill():
  batch, frames = 64, 50
  lengths = np.random.default_rng(0).integers(12, frames, batch)
  mask = np.arange(frames)[None] < lengths[:, None]
  x = jnp.ones((batch, frames, 8)) * 3.0
  out = np.asarray(
    af.spec_augment(
      x, jax.random.PRNGKey(4), num_freq_masks=0, num_time_masks=1, time_mask_width=10, mask=mask
    )
  )
  hidden = np.all(out == 0, axis=2)
  assert np.all(hidden.sum(-1) == 10)
  assert not np.any(hidden & ~mask)
  # 'mean' fills with each utterance's mean over valid entries.
  feats = np.where(mask[..., None], np.arange(batch)[:, None, None] + 1.0, 100.0)
  feats = np.broadcast_to(feats, (batch, frames, 8))
  out = np.asarray(
    af.spec_augment(
      jnp.asarray(feats, jnp.float32),
      jax.random.PRNGKey(4),
      num_freq_masks=1,
      freq_mask_width=3,
      num_time_masks=0,
      mask=mask,
      fill="mean",
    )
  )
  changed = out != feats
  assert np.all(changed.sum(axis=(1, 2)) == 3 * (frames - lengths))  # only padded frames change
  np.testing.assert_allclose(
    out[changed], np.broadcast_to(np.arange(batch)[:, None, None] + 1.0, out.shape)[changed]
  )
  with pytest.raises(ValueError, match="fill"):
    af.spec_augment(x, jax.random.PRNGKey(0), fill="noise")
