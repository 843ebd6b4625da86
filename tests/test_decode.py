"""Decoding real files: image colour modes to RGB, audio to mono at the model's rate
(against librosa's loader), and errors that name the file."""

import io

import numpy as np
import pytest
from PIL import Image

from cmjax.data import decode


def _png_bytes(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
  buf = io.BytesIO()
  img.save(buf, format=fmt, **kw)
  return buf.getvalue()


@pytest.fixture
def rgb():
  return np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)


def test_rgb_png_and_lossless_webp_decode_to_the_same_pixels(rgb):
  for data in (
    _png_bytes(Image.fromarray(rgb)),
    _png_bytes(Image.fromarray(rgb), "WEBP", lossless=True),
  ):
    out = decode.image(data)
    assert out.dtype == np.uint8 and out.shape == (20, 30, 3)
    np.testing.assert_array_equal(out, rgb)


def test_grey_palette_rgba_and_cmyk_become_rgb(rgb):
  grey = rgb[..., 0]
  np.testing.assert_array_equal(
    decode.image(_png_bytes(Image.fromarray(grey))), np.repeat(grey[..., None], 3, -1)
  )

  palette = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
  want = np.asarray(palette.convert("RGB"))
  np.testing.assert_array_equal(decode.image(_png_bytes(palette)), want)

  rgba = np.concatenate([rgb, np.full((20, 30, 1), 7, np.uint8)], -1)
  np.testing.assert_array_equal(decode.image(_png_bytes(Image.fromarray(rgba))), rgb)

  cmyk = Image.fromarray(rgb).convert("CMYK")
  out = decode.image(_png_bytes(cmyk, "JPEG", quality=100))
  assert out.shape == (20, 30, 3)
  assert np.abs(out.astype(int) - rgb).mean() < 12  # JPEG loss only


def test_16_bit_grey_is_scaled_not_clipped():
  values = np.array([[0, 256, 32768, 65535]], np.uint16)
  out = decode.image(_png_bytes(Image.fromarray(values)))
  np.testing.assert_array_equal(out[0, :, 0], [0, 0, 127, 255])
  assert out.shape == (1, 4, 3)


def test_bad_images_name_the_file(tmp_path):
  with pytest.raises(decode.DataError, match="missing.png"):
    decode.image(str(tmp_path / "missing.png"))
  broken = tmp_path / "broken.jpg"
  broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
  with pytest.raises(decode.DataError, match="broken.jpg"):
    decode.image(str(broken))


@pytest.mark.parametrize("fmt,subtype", [("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("WAV", "FLOAT")])
def test_audio_matches_librosa_load(tmp_path, fmt, subtype):
  """Stereo at 22.05 kHz -> mono at 16 kHz equals librosa's loader with its
  default resampler, soxr_hq (it mixes channels by averaging too)."""
  librosa = pytest.importorskip("librosa")
  import soundfile

  rng = np.random.default_rng(1)
  t = np.arange(11025) / 22050
  stereo = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.3 * rng.standard_normal(t.size)], 1)
  path = str(tmp_path / f"clip.{fmt.lower()}")
  soundfile.write(path, stereo.astype(np.float32), 22050, format=fmt, subtype=subtype)
  ours = decode.audio(path, 16000)
  ref, _ = librosa.load(path, sr=16000, mono=True, res_type="soxr_hq")
  assert ours.dtype == np.float32 and ours.shape == ref.shape
  np.testing.assert_allclose(ours, np.clip(ref, -1, 1), atol=1e-5)


def test_ogg_keeps_the_waveform(tmp_path):
  import soundfile

  t = np.arange(16000) / 16000
  wave = (0.5 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
  path = str(tmp_path / "tone.ogg")
  soundfile.write(path, wave, 16000, format="OGG", subtype="VORBIS")
  out = decode.audio(path, 16000)
  n = min(len(out), len(wave))
  assert abs(len(out) - len(wave)) < 100
  assert np.corrcoef(out[:n], wave[:n])[0, 1] > 0.99  # lossy, same tone


def test_empty_and_corrupt_audio_name_the_file(tmp_path):
  import soundfile

  empty = str(tmp_path / "empty.wav")
  soundfile.write(empty, np.zeros((0,), np.float32), 16000)
  with pytest.raises(decode.DataError, match="empty.wav.*no samples"):
    decode.audio(empty, 16000)
  bad = tmp_path / "bad.wav"
  bad.write_bytes(b"RIFF....WAVEnope")
  with pytest.raises(decode.DataError, match="bad.wav"):
    decode.audio(str(bad), 16000)


def test_jpeg_scaled_decoding_keeps_at_least_min_side(tmp_path):
  y, x = np.mgrid[0:480, 0:640]
  img = np.stack([x % 256, y % 256, (x + y) % 256], -1).astype(np.uint8)
  path = str(tmp_path / "photo.jpg")
  Image.fromarray(img).save(path, quality=95)
  assert decode.image(path).shape == (480, 640, 3)
  assert decode.image(path, min_side=100).shape == (120, 160, 3)  # 1/4: 120 >= 100
  assert decode.image(path, min_side=130).shape == (240, 320, 3)  # 1/2
  assert decode.image(path, min_side=50).shape == (60, 80, 3)  # 1/8
  png = str(tmp_path / "photo.png")
  Image.fromarray(img).save(png)
  assert decode.image(png, min_side=50).shape == (480, 640, 3)  # only JPEGs decode scaled


def test_pcm_scaling_by_dtype():
  # 16-bit PCM (and TFDS's int64 arrays holding it), 8-bit unsigned, 32-bit, float.
  np.testing.assert_array_equal(
    decode.from_pcm(np.array([-32768, 0, 16384], np.int16)), [-1.0, 0.0, 0.5]
  )
  np.testing.assert_array_equal(decode.from_pcm(np.array([-32768, 16384], np.int64)), [-1.0, 0.5])
  np.testing.assert_array_equal(
    decode.from_pcm(np.array([0, 128, 192], np.uint8)), [-1.0, 0.0, 0.5]
  )
  np.testing.assert_array_equal(decode.from_pcm(np.array([2**30], np.int32)), [0.5])
  np.testing.assert_array_equal(decode.from_pcm(np.array([0.25], np.float64)), [0.25])
  with pytest.raises(decode.DataError, match="not numbers"):
    decode.from_pcm(np.array(["a"]))


def test_waveform_mixed_to_mono_and_resampled():
  stereo = np.stack([np.full(800, 8192, np.int16), np.full(800, -8192, np.int16) // 2], axis=1)
  out = decode.audio(decode.Waveform(stereo, 8000), 8000)
  np.testing.assert_allclose(out, np.full(800, (0.25 - 0.125) / 2), atol=1e-7)
  assert len(decode.audio(decode.Waveform(stereo[:, 0], 8000), 16000)) == 1600
  with pytest.raises(decode.DataError, match="no samples"):
    decode.audio(decode.Waveform(np.zeros(0, np.int16), 8000), 8000)


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 1), (5, 7, 3), (5, 7, 4)])
def test_image_arrays_to_rgb(shape):
  arr = np.random.default_rng(0).integers(0, 256, shape, np.uint8)
  out = decode.image(arr)
  assert out.shape == (5, 7, 3) and out.dtype == np.uint8
  flat = arr.reshape(5, 7, -1)
  np.testing.assert_array_equal(
    out, flat[..., :3] if flat.shape[-1] >= 3 else np.repeat(flat, 3, -1)
  )


def test_bad_image_arrays_raise():
  with pytest.raises(decode.DataError, match="uint8"):
    decode.image(np.zeros((4, 4, 3), np.float32))
  with pytest.raises(decode.DataError, match="empty"):
    decode.image(np.zeros((0, 4, 3), np.uint8))
