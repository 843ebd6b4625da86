"""Decoding real files: images to RGB uint8, audio to mono float32 at a set rate.

Both take a path or the file's bytes (a webdataset member), or what a TFDS
record already holds (an image array; a `Waveform` of samples and their rate),
so every dataset ends in the same arrays. A file that cannot be read raises
`DataError` naming it; datasets add the row or example that pointed at it.
"""

from __future__ import annotations

import io
import math
import os
from typing import NamedTuple

import numpy as np


class DataError(ValueError):
  """A bad example: names the file and, once a dataset re-raises it, the row."""


class Waveform(NamedTuple):
  """Decoded audio: `samples` `[n]` or `[n, channels]` (float, or integer PCM) at
  `rate` Hz, as TFDS's `Audio` feature gives it."""

  samples: np.ndarray
  rate: int


_ORIENTATION = 0x0112  # the EXIF tag

# Integer PCM -> [-1, 1]. TFDS stores 16-bit WAV samples in int64 arrays, so
# 64-bit integers are read as 16-bit, as are 16-bit ones.
_PCM_SCALE = {1: 2.0**7, 2: 2.0**15, 4: 2.0**31, 8: 2.0**15}


def from_pcm(samples: np.ndarray) -> np.ndarray:
  """Audio samples `[n, ...]` of any dtype -> float32 in [-1, 1]."""
  samples = np.asarray(samples)
  if samples.dtype.kind in "iu":
    scale = _PCM_SCALE[samples.dtype.itemsize]
    offset = scale if samples.dtype.kind == "u" else 0.0  # unsigned 8-bit PCM is centred at 128
    return np.clip((samples.astype(np.float64) - offset) / scale, -1.0, 1.0).astype(np.float32)
  if samples.dtype.kind != "f":
    raise DataError(f"audio samples of dtype {samples.dtype} are not numbers")
  return samples.astype(np.float32)


def _open(file, what: str):
  """(a binary file object, its name for messages) from a path or bytes."""
  if isinstance(file, (bytes, bytearray, memoryview)):
    return io.BytesIO(bytes(file)), f"<{len(file)} bytes of {what}>"
  name = os.fspath(file)
  try:
    return open(name, "rb"), name
  except OSError as e:
    raise DataError(f"cannot read {what} file {name!r}: {e.strerror or e}") from None


def image(file, min_side: int | None = None) -> np.ndarray:
  """An image file (JPEG, PNG, WebP, GIF, BMP, ...) or a decoded uint8 array
  `[H, W(, 1|3|4)]` -> uint8 `[H, W, 3]` RGB.

  Grey, palette, RGBA / LA (alpha dropped), CMYK and 16-bit images are converted
  to 8-bit RGB; the EXIF orientation of photos is applied. With `min_side`, a
  JPEG is decoded at the smallest of 1/1, 1/2, 1/4 or 1/8 of its size whose
  shorter side is still at least `min_side` (libjpeg's scaled decoding: several
  times faster for large photos going to small models; other formats decode
  whole). `min_side` may be a function of the upright image's `(height, width)`,
  called before decoding (`files.train_image` picks its crop there).
  """
  from PIL import Image, ImageOps  # pylint: disable=g-import-not-at-top

  if isinstance(file, np.ndarray):
    return _image_array(file)
  f, name = _open(file, "image")
  with f:
    try:
      img = Image.open(f)
      if callable(min_side):  # decided from the (upright) size, before decoding
        w, h = img.size
        if img.getexif().get(_ORIENTATION, 1) in (5, 6, 7, 8):  # turned a quarter
          w, h = h, w
        min_side = min_side(h, w)
      if min_side and img.format == "JPEG":
        scale = min_side / max(min(img.size), 1)
        img.draft("RGB", (math.ceil(img.size[0] * scale), math.ceil(img.size[1] * scale)))
      img.load()
      img = ImageOps.exif_transpose(img)
    except Exception as e:  # PIL raises many types for broken files
      raise DataError(f"cannot decode image {name!r}: {e}") from None
  if img.mode in ("I;16", "I;16B", "I;16L", "I"):
    # 16-bit grey: PIL's direct conversion to RGB clips instead of scaling.
    arr = np.asarray(img, np.int64)
    top = 65535 if arr.max(initial=0) > 255 else 255
    img = Image.fromarray((arr * 255 // top).clip(0, 255).astype(np.uint8))
  elif img.mode == "P":
    img = img.convert("RGBA")
  out = np.asarray(img.convert("RGB"), np.uint8)
  if out.shape[0] == 0 or out.shape[1] == 0:
    raise DataError(f"image {name!r} is empty ({out.shape[1]}x{out.shape[0]} pixels)")
  return out


def _image_array(arr: np.ndarray) -> np.ndarray:
  """A decoded image `[H, W]`, `[H, W, 1|3|4]` (uint8) -> uint8 `[H, W, 3]`."""
  if arr.ndim == 2:
    arr = arr[..., None]
  if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4) or arr.dtype != np.uint8:
    raise DataError(f"expected a uint8 image [H, W, 1|3|4], got {arr.dtype} {arr.shape}")
  if arr.shape[0] == 0 or arr.shape[1] == 0:
    raise DataError(f"image array is empty ({arr.shape[1]}x{arr.shape[0]} pixels)")
  if arr.shape[-1] == 1:
    return np.repeat(arr, 3, axis=-1)
  return np.ascontiguousarray(arr[..., :3])


def audio(file, sample_rate: int) -> np.ndarray:
  """An audio file (WAV, FLAC, OGG/Vorbis, MP3) or a `Waveform` -> float32 `[n]` in [-1, 1].

  Channels are averaged to mono; other sample rates are resampled to
  `sample_rate` (`resample`).
  """
  import soundfile  # pylint: disable=g-import-not-at-top

  if isinstance(file, Waveform):
    wave = from_pcm(file.samples)
    if wave.shape[0] == 0:
      raise DataError("audio waveform has no samples")
    return resample(wave.reshape(len(wave), -1).mean(axis=1), file.rate, sample_rate)
  f, name = _open(file, "audio")
  with f:
    try:
      wave, rate = soundfile.read(f, dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError, RuntimeError, ...
      raise DataError(f"cannot decode audio {name!r}: {e}") from None
  if wave.shape[0] == 0:
    raise DataError(f"audio {name!r} has no samples")
  return resample(wave.mean(axis=1), rate, sample_rate)


def resample(wave: np.ndarray, rate: int, sample_rate: int) -> np.ndarray:
  """float32 `[n]` at `rate` Hz -> float32 `[m]` at `sample_rate` Hz.

  libsoxr's high-quality resampler, as librosa's default (`res_type='soxr_hq'`);
  about twice as fast as scipy's polyphase filter at 22.05 -> 16 kHz.
  """
  wave = np.asarray(wave, np.float32)
  if int(rate) == int(sample_rate):
    return wave
  import soxr  # pylint: disable=g-import-not-at-top

  out = soxr.resample(wave, int(rate), int(sample_rate), quality="HQ")
  return np.clip(out, -1.0, 1.0).astype(np.float32)
