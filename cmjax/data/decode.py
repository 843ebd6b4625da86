"""Decoding real files: images to RGB uint8, audio to mono float32 at a set rate.

Both take a path or the file's bytes (a webdataset member, a TFDS feature), so
every dataset decodes the same way. A file that cannot be read raises
`DataError` naming it; datasets add the row or example that pointed at it.
"""

from __future__ import annotations

import io
import math
import os

import numpy as np


class DataError(ValueError):
  """A bad example: names the file and, once a dataset re-raises it, the row."""


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
  """An image file (JPEG, PNG, WebP, GIF, BMP, ...) -> uint8 `[H, W, 3]` RGB.

  Grey, palette, RGBA / LA (alpha dropped), CMYK and 16-bit images are converted
  to 8-bit RGB; the EXIF orientation of photos is applied. With `min_side`, a
  JPEG is decoded at the smallest of 1/1, 1/2, 1/4 or 1/8 of its size whose
  shorter side is still at least `min_side` (libjpeg's scaled decoding: several
  times faster for large photos going to small models; other formats decode
  whole).
  """
  from PIL import Image, ImageOps  # pylint: disable=g-import-not-at-top

  f, name = _open(file, "image")
  with f:
    try:
      img = Image.open(f)
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


def audio(file, sample_rate: int) -> np.ndarray:
  """An audio file (WAV, FLAC, OGG/Vorbis, MP3) -> float32 `[n]` in [-1, 1].

  Channels are averaged to mono; other sample rates are resampled to
  `sample_rate` (polyphase filter, `scipy.signal.resample_poly`).
  """
  import soundfile  # pylint: disable=g-import-not-at-top

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
  """float32 `[n]` at `rate` Hz -> float32 `[m]` at `sample_rate` Hz (m = ceil(n*sr/rate))."""
  wave = np.asarray(wave, np.float32)
  if int(rate) == int(sample_rate):
    return wave
  from scipy import signal  # pylint: disable=g-import-not-at-top

  g = math.gcd(int(rate), int(sample_rate))
  out = signal.resample_poly(wave, int(sample_rate) // g, int(rate) // g)
  return np.clip(out, -1.0, 1.0).astype(np.float32)
