"""Resize / crop / flip of real pictures: the evaluation view against PIL's
resize-then-crop, and the training view's randomness and bounds."""

import numpy as np
import pytest
from PIL import Image

from cmjax.data import image_ops


@pytest.fixture
def photo():
  # Smooth content, so resampling differences stay small.
  y, x = np.mgrid[0:96, 0:128]
  img = np.stack([x * 2, y * 2, (x + y)], -1)
  return np.clip(img, 0, 255).astype(np.uint8)


def test_eval_view_equals_resize_then_center_crop(photo):
  """128x96 -> 48: PIL scales the shorter side to 48 (the width to 64) and we
  crop 8 columns each side; one resampling of the box must agree."""
  ref = np.asarray(Image.fromarray(photo).resize((64, 48), Image.Resampling.BICUBIC))[:, 8:56]
  out = image_ops.resize_shorter_center_crop(photo, 48)
  assert out.shape == (48, 48, 3) and out.dtype == np.uint8
  assert np.abs(out.astype(int) - ref).max() <= 2


def test_eval_view_of_a_tall_image_keeps_its_centre():
  img = np.zeros((90, 30, 3), np.uint8)
  img[30:60] = 255  # the central square is white, the rest black
  out = image_ops.resize_shorter_center_crop(img, 30)
  assert out.shape == (30, 30, 3)
  assert out[2:-2].min() == 255


def test_train_view_is_a_pure_function_of_the_rng(photo):
  a = image_ops.train_view(photo, 32, np.random.default_rng(5), scale=(0.3, 1.0), jitter=0.4)
  b = image_ops.train_view(photo, 32, np.random.default_rng(5), scale=(0.3, 1.0), jitter=0.4)
  c = image_ops.train_view(photo, 32, np.random.default_rng(6), scale=(0.3, 1.0), jitter=0.4)
  np.testing.assert_array_equal(a, b)
  assert a.shape == (32, 32, 3) and not np.array_equal(a, c)


def test_full_scale_crop_without_flip_is_the_whole_image_resized():
  img = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
  out = image_ops.random_resized_crop(img, 20, np.random.default_rng(0), scale=(1, 1), ratio=(1, 1))
  ref = np.asarray(Image.fromarray(img).resize((20, 20), Image.Resampling.BICUBIC))
  np.testing.assert_array_equal(out, ref)


def test_crops_lie_within_scale_bounds():
  """A one-hot column image: a crop of width fraction f shows about f of the columns."""
  img = np.zeros((100, 100, 3), np.uint8)
  img[:, :, 0] = np.arange(100)[None, :] * 2  # red encodes the column
  for seed in range(20):
    out = image_ops.random_resized_crop(img, 50, np.random.default_rng(seed), scale=(0.25, 0.5))
    span = (float(out[:, -1, 0].mean()) - float(out[:, 0, 0].mean())) / 2  # columns covered
    # Width fraction sqrt(area * aspect): from sqrt(0.25 * 3/4) to sqrt(0.5 * 4/3).
    assert 100 * (0.25 * 0.75) ** 0.5 - 4 <= span <= 100 * (0.5 * 4 / 3) ** 0.5 + 1


def test_flip_happens_about_half_the_time():
  img = np.zeros((16, 16, 3), np.uint8)
  img[:, :8] = 255  # left half white
  flips = sum(
    image_ops.train_view(img, 16, np.random.default_rng(s), scale=(1, 1))[:, 0, 0].mean() < 128
    for s in range(200)
  )
  assert 70 < flips < 130


def test_no_flip_and_no_jitter_when_off():
  img = np.zeros((16, 16, 3), np.uint8)
  img[:, :8] = 200
  for s in range(20):
    out = image_ops.train_view(img, 16, np.random.default_rng(s), scale=(1, 1), flip=False)
    assert out[:, 0].mean() > 150 and out[:, -1].mean() < 50


def _encoded(img: np.ndarray, fmt: str, **kw) -> bytes:
  import io

  buf = io.BytesIO()
  Image.fromarray(img).save(buf, fmt, **kw)
  return buf.getvalue()


AUGMENT = dict(crop_scale=(0.08, 1.0), flip=True, color_jitter=0.0)


def test_train_image_draws_the_crop_as_train_view_does(photo):
  """A PNG is decoded whole: the same crop, flip and pixels as train_view."""
  from cmjax.data import decode, files

  for seed in range(5):
    out = files.train_image(_encoded(photo, "PNG"), 32, np.random.default_rng(seed), AUGMENT)
    want = image_ops.train_view(photo, 32, np.random.default_rng(seed), scale=(0.08, 1.0))
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(
      files.train_image(photo, 32, np.random.default_rng(seed), AUGMENT), want
    )  # an array (a TFDS image) too
  del decode


def test_train_image_decodes_a_jpeg_only_as_large_as_its_crop_needs(monkeypatch):
  """A 1024x768 JPEG to 64 pixels: a small crop needs more of the picture's
  pixels than a large one, and the view stays close to the fully decoded one."""
  from cmjax.data import decode, files

  y, x = np.mgrid[0:768, 0:1024]
  big = np.clip(np.stack([x // 4, y // 3, (x + y) // 7], -1), 0, 255).astype(np.uint8)
  data = _encoded(big, "JPEG", quality=95)
  asked = []
  real = decode.image

  def spy(file, min_side=None):
    out = real(file, min_side=min_side)
    asked.append(out.shape[:2])
    return out

  monkeypatch.setattr(decode, "image", spy)
  for seed in range(12):
    out = files.train_image(data, 64, np.random.default_rng(seed), AUGMENT)
    full = image_ops.train_view(real(data), 64, np.random.default_rng(seed), scale=(0.08, 1.0))
    assert np.abs(out.astype(int) - full).mean() < 3
  sides = {min(s) for s in asked}
  assert len(sides) > 1 and min(sides) <= 768 / 4  # scaled decoding, per crop


def test_train_image_of_an_exif_rotated_jpeg():
  """Orientation 6 (turned a quarter): the crop is drawn on the upright size."""
  from cmjax.data import decode, files

  y, x = np.mgrid[0:240, 0:320]
  img = np.clip(np.stack([x // 2, y, x * 0 + 90], -1), 0, 255).astype(np.uint8)
  exif = Image.Exif()
  exif[0x0112] = 6
  data = _encoded(img, "JPEG", quality=95, exif=exif.tobytes())
  upright = decode.image(data)
  assert upright.shape == (320, 240, 3)
  for seed in range(4):
    out = files.train_image(data, 32, np.random.default_rng(seed), AUGMENT)
    want = image_ops.train_view(upright, 32, np.random.default_rng(seed), scale=(0.08, 1.0))
    assert np.abs(out.astype(int) - want).mean() < 3
