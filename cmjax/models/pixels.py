"""Pixels to the float values an image encoder was trained on, chosen per model.

Batches carry images as uint8 (a quarter of float32's bytes through the input
pipeline and onto the devices); each image or video encoder turns them into
floats with its `pixel_norm`:

  'minus_one_one'  x / 127.5 - 1             (the default; big_vision, SigLIP)
  'zero_one'       x / 255
  'imagenet'       (x / 255 - mean) / std    ImageNet's channel statistics
  'clip'           (x / 255 - mean) / std    the statistics CLIP's weights expect
  (mean, std)      your own, per channel, on the [0, 1] scale

Pretrained weights need the normalisation they were trained with.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Per-channel (mean, std) on the [0, 1] scale.
CHANNEL_STATS = {
  "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
  "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
}
NAMES = ("minus_one_one", "zero_one", *CHANNEL_STATS)


def _stats(norm) -> tuple[tuple[float, ...], tuple[float, ...]]:
  if isinstance(norm, str):
    if norm not in CHANNEL_STATS:
      raise ValueError(f"pixel_norm={norm!r}; expected one of {NAMES} or (mean, std)")
    return CHANNEL_STATS[norm]
  try:
    mean, std = norm
    mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
  except (TypeError, ValueError):
    raise ValueError(
      f"pixel_norm={norm!r}; expected one of {NAMES} or (mean, std), e.g. "
      "((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))"
    ) from None
  if len(mean) != len(std) or not mean or min(std) <= 0:
    raise ValueError(f"pixel_norm (mean, std) = {norm!r}: equal lengths, std > 0")
  return mean, std


def to_float(image: jax.Array, norm="minus_one_one") -> jax.Array:
  """uint8 in [0, 255] (or float in [0, 1]) `[..., channels]` -> float32 by `norm`."""
  integer = jnp.issubdtype(image.dtype, jnp.integer)
  if norm == "minus_one_one":  # kept in this form: runs before it used exactly this
    if integer:
      return image.astype(jnp.float32) / 127.5 - 1.0
    return image.astype(jnp.float32) * 2.0 - 1.0
  x = image.astype(jnp.float32) / 255.0 if integer else image.astype(jnp.float32)
  if norm == "zero_one":
    return x
  mean, std = _stats(norm)
  if len(mean) != image.shape[-1]:
    raise ValueError(
      f"pixel_norm has {len(mean)} channel statistics for images of {image.shape[-1]} channels"
    )
  return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)
