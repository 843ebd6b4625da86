"""Log-mel features against librosa."""

import librosa
import numpy as np
import pytest

from cmjax.models import audio_features as af


@pytest.mark.parametrize(
  "sr,n_fft,n_mels,fmin,fmax",
  [
    (16000, 400, 64, 0.0, None),
    (16000, 512, 40, 20.0, 7600.0),
    (22050, 1024, 80, 0.0, 8000.0),
  ],
)
def test_filterbank_matches_librosa(sr, n_fft, n_mels, fmin, fmax):
  got = af.mel_filterbank(sr, n_fft, n_mels, fmin, fmax)
  want = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
  assert got.shape == want.shape == (n_mels, n_fft // 2 + 1)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-8)


def test_mel_scale_round_trip_and_knee():
  f = np.array([0.0, 500.0, 1000.0, 4000.0, 8000.0])
  np.testing.assert_allclose(af.mel_to_hz(af.hz_to_mel(f)), f, atol=1e-6)
  np.testing.assert_allclose(af.hz_to_mel(f), librosa.hz_to_mel(f), rtol=1e-10)


@pytest.mark.parametrize("samples,n_fft,hop", [(4000, 400, 160), (3333, 512, 128)])
def test_mel_spectrogram_matches_librosa(samples, n_fft, hop):
  rng = np.random.default_rng(0)
  wave = (rng.standard_normal((2, samples)) * 0.3).astype(np.float32)
  got = np.asarray(
    af.mel_spectrogram(wave, sample_rate=16000, n_fft=n_fft, hop_length=hop, n_mels=64)
  )
  want = librosa.feature.melspectrogram(
    y=wave.astype(np.float64),
    sr=16000,
    n_fft=n_fft,
    hop_length=hop,
    n_mels=64,
    center=True,
    pad_mode="constant",
    power=2.0,
  )
  want = np.swapaxes(want, 1, 2)  # librosa: [batch, mels, frames]
  assert got.shape == want.shape == (2, af.num_frames(samples, n_fft, hop), 64)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * want.max())


def test_log_mel_is_log_of_mel_plus_eps():
  wave = np.random.default_rng(1).standard_normal((1, 1600)).astype(np.float32)
  mel = np.asarray(af.mel_spectrogram(wave, n_mels=32))
  logmel = np.asarray(af.log_mel_spectrogram(wave, n_mels=32, eps=1e-6))
  np.testing.assert_allclose(logmel, np.log(mel + 1e-6), rtol=1e-5, atol=1e-5)
  # Silence stays finite thanks to eps.
  assert np.isfinite(np.asarray(af.log_mel_spectrogram(np.zeros((1, 800))))).all()


def test_frame_mask():
  hop = 160
  mask = np.zeros((2, 1000), bool)
  mask[0, :1000] = True
  mask[1, :321] = True
  got = np.asarray(af.frame_mask(mask, hop, n_fft=400))
  assert got.shape == (2, 1 + 1000 // hop)
  # Centres 0,160,...,960: row 0 all valid; row 1 valid where centre < 321.
  assert got[0].all()
  np.testing.assert_array_equal(got[1], [True, True, True, False, False, False, False])
  # Appending masked samples leaves existing frames' mask unchanged.
  longer = np.concatenate([mask, np.zeros((2, 500), bool)], axis=1)
  got_long = np.asarray(af.frame_mask(longer, hop, n_fft=400))
  np.testing.assert_array_equal(got_long[:, : got.shape[1]], got)
  assert not got_long[:, got.shape[1] :].any()
