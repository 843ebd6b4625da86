"""Geometric image preprocessing for real pictures, on uint8 `[H, W, 3]` arrays.

Evaluation: resize the shorter side to the target, then crop the centre.
Training: an Inception-style random resized crop (a random area fraction and
aspect ratio, resized to the target), a horizontal flip with probability 1/2
and an optional brightness / contrast / saturation jitter. Randomness comes
from the `np.random.Generator` grain hands each example, so a run's
augmentation is a pure function of (seed, example, visit).

Resizing uses PIL's antialiased bicubic filter (`Image.resize` with a `box`,
so a crop and its resize are one resampling step).
"""

from __future__ import annotations

import math

import numpy as np


def _resize(img: np.ndarray, size: tuple[int, int], box=None) -> np.ndarray:
  """uint8 `[H, W, 3]` (or the `box` (left, top, right, bottom) of it) -> `[h, w, 3]`."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  h, w = size
  if box is None and img.shape[:2] == (h, w):
    return img
  pil = Image.fromarray(img)
  return np.asarray(pil.resize((w, h), Image.Resampling.BICUBIC, box=box), np.uint8)


def resize_shorter_center_crop(img: np.ndarray, size: int) -> np.ndarray:
  """Scales so the shorter side is `size`, then takes the central `size x size`.

  The crop box is computed in the original pixels, so the result is one
  resampling of the central square-ish region (as resize-then-crop would be,
  without rounding the intermediate size).
  """
  h, w = img.shape[:2]
  side = min(h, w)
  top, left = (h - side) / 2, (w - side) / 2
  return _resize(img, (size, size), box=(left, top, left + side, top + side))


def random_crop_box(
  h: int,
  w: int,
  rng: np.random.Generator,
  scale: tuple[float, float] = (0.08, 1.0),
  ratio: tuple[float, float] = (3 / 4, 4 / 3),
  attempts: int = 10,
) -> tuple[float, float, float, float]:
  """(left, top, right, bottom) of a crop of an `h x w` image of random area (a
  fraction in `scale` of the image) and aspect ratio (log-uniform in `ratio`).

  After `attempts` draws that do not fit, the central crop with the aspect
  ratio clamped into `ratio`.
  """
  area = h * w
  log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
  for _ in range(attempts):
    target = area * rng.uniform(scale[0], scale[1])
    aspect = math.exp(rng.uniform(log_lo, log_hi))
    cw = math.sqrt(target * aspect)
    ch = math.sqrt(target / aspect)
    if 0 < cw <= w and 0 < ch <= h:
      left = rng.uniform(0, w - cw)
      top = rng.uniform(0, h - ch)
      return (left, top, left + cw, top + ch)
  if w / h < ratio[0]:  # too tall: full width, height cut to the narrowest ratio
    cw, ch = w, w / ratio[0]
  elif w / h > ratio[1]:  # too wide
    cw, ch = h * ratio[1], h
  else:
    cw, ch = w, h
  left, top = (w - cw) / 2, (h - ch) / 2
  return (left, top, left + cw, top + ch)


def random_resized_crop(
  img: np.ndarray,
  size: int,
  rng: np.random.Generator,
  scale: tuple[float, float] = (0.08, 1.0),
  ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> np.ndarray:
  """A `random_crop_box` of `img`, resized to `size x size`."""
  box = random_crop_box(img.shape[0], img.shape[1], rng, scale, ratio)
  return _resize(img, (size, size), box=box)


def color_jitter(img: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
  """Brightness, contrast and saturation each scaled by a factor in
  `[1 - strength, 1 + strength]` (in that order, as uint8 in and out)."""
  if strength <= 0:
    return img
  b, c, s = rng.uniform(1 - strength, 1 + strength, size=3)
  x = img.astype(np.float32) * b
  grey = x @ np.array([0.299, 0.587, 0.114], np.float32)
  x = (x - grey.mean()) * c + grey.mean()
  grey = (x @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
  x = (x - grey) * s + grey
  return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def train_view(
  img: np.ndarray,
  size: int,
  rng: np.random.Generator,
  *,
  scale: tuple[float, float] = (0.08, 1.0),
  flip: bool = True,
  jitter: float = 0.0,
  box: tuple[float, float, float, float] | None = None,
) -> np.ndarray:
  """The training view of an image: random resized crop, flip, optional jitter.

  `box`: the crop, already drawn (`random_crop_box`), in `img`'s pixels.
  """
  if box is None:
    out = random_resized_crop(img, size, rng, scale=scale)
  else:
    out = _resize(img, (size, size), box=box)
  if flip and rng.random() < 0.5:
    out = out[:, ::-1]
  return np.ascontiguousarray(color_jitter(out, jitter, rng))
