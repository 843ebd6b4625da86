"""Pixel normalisation chosen per model (`pixel_norm` of the image and video encoders)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmjax.models import pixels, resnet, video, vit


@pytest.fixture
def image():
  return np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), np.uint8)


@pytest.mark.parametrize(
  "norm", ["zero_one", "imagenet", "clip", ((0.2, 0.3, 0.4), (0.5, 0.6, 0.7))]
)
def test_mean_std_normalisation(image, norm):
  mean, std = (0.0, 1.0) if norm == "zero_one" else pixels._stats(norm)
  want = (image.astype(np.float64) / 255 - np.asarray(mean)) / np.asarray(std)
  np.testing.assert_allclose(pixels.to_float(jnp.asarray(image), norm), want, rtol=1e-5, atol=1e-5)
  # Floats in [0, 1] are the same pixels.
  np.testing.assert_allclose(
    pixels.to_float(jnp.asarray(image / 255.0, jnp.float32), norm), want, rtol=1e-5, atol=1e-5
  )


def test_default_is_the_minus_one_to_one_range(image):
  out = np.asarray(pixels.to_float(jnp.asarray(image)))
  np.testing.assert_allclose(out, image.astype(np.float64) / 127.5 - 1.0, atol=1e-6)
  assert out.min() >= -1 and out.max() <= 1


@pytest.mark.parametrize(
  "norm, match",
  [("imagnet", "expected one of"), ((0.5, 0.5), "expected one of"), (((0.5,), (0.0,)), "std > 0")],
)
def test_bad_pixel_norm_raises(image, norm, match):
  with pytest.raises(ValueError, match=match):
    pixels.to_float(jnp.asarray(image), norm)


def test_channel_count_must_match(image):
  with pytest.raises(ValueError, match="3 channel statistics for images of 1 channels"):
    pixels.to_float(jnp.asarray(image[..., :1]), "imagenet")


@pytest.mark.parametrize(
  "make",
  [
    lambda **kw: vit.ViT(patch_size=4, width=8, depth=1, num_heads=2, mlp_dim=16, **kw),
    lambda **kw: resnet.ResNet(features=(8,), blocks=(1,), num_groups=2, **kw),
  ],
)
def test_encoders_apply_their_pixel_norm(image, make):
  """An encoder with pixel_norm='zero_one' on uint8 pixels computes what the
  default one computes on floats that its [-1, 1] mapping sends to x / 255."""
  x = jnp.asarray(image)
  default, zero_one = make(), make(pixel_norm="zero_one")
  params = default.init(jax.random.key(0), x)
  shifted = (x.astype(jnp.float32) / 255.0 + 1.0) / 2.0  # 2 * shifted - 1 == x / 255
  a = zero_one.apply(params, x).pooled
  b = default.apply(params, shifted).pooled
  np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  assert not np.allclose(a, default.apply(params, x).pooled, atol=1e-3)


def test_tubelet_vit_pixel_norm():
  clip = np.random.default_rng(1).integers(0, 256, (1, 2, 8, 8, 3), np.uint8)
  kw = dict(tubelet_frames=2, patch_size=4, width=8, depth=1, num_heads=2, mlp_dim=16)
  model = video.TubeletViT(**kw)
  params = model.init(jax.random.key(0), clip)
  a = video.TubeletViT(**kw, pixel_norm="clip").apply(params, clip).pooled
  b = model.apply(params, clip).pooled
  assert a.shape == b.shape and not np.allclose(a, b, atol=1e-3)
