"""The image + text contrastive model at the sizes the throughput benchmark times.

Each size is the default experiment (`configs/shapes_contrastive.py`) with the
speech tower left out, so that the PyTorch reference (`torch_reference.py`)
can be the same model: ViT image tower, Transformer text tower, bias-free
projections, CLIP loss, AdamW with global-norm clipping.

  tiny   a few-second smoke size.
  small  the default experiment's image and text towers, at its batch size.
  base   about ViT-S: width 384, 6 heads, MLP 1536, 12 layers in each tower
         (64 patch tokens of 8x8 pixels; 20 text tokens).
  vit_b16  CLIP ViT-B/16's towers for accelerators: a ViT-B/16 image tower
         (width 768, 12 heads, MLP 3072, 12 layers) on 224x224 images (196
         patch tokens), a width-512, 8-head, 12-layer text tower, embeddings
         of 512. Not among the CPU benchmark's default sizes: one train step
         there takes minutes.

Also here: random batches of the model's input spec (the same for both
frameworks) and the analytic count of model FLOPs per train step.
"""

from __future__ import annotations

import math

import numpy as np

from cmjax import encoder_presets
from cmjax.data import datasets
from configs import shapes_contrastive


def _vit(width, depth, heads, mlp, patch, stem="patch"):
  return dict(
    name="vit",
    patch_size=patch,
    width=width,
    depth=depth,
    num_heads=heads,
    mlp_dim=mlp,
    pool="mean",
    stem=stem,
  )


def _text(width, depth, heads, mlp):
  return dict(name="transformer", width=width, depth=depth, num_heads=heads, mlp_dim=mlp)


# size -> (image tower, text tower, batch size)
SIZES = {
  "tiny": (_vit(64, 2, 2, 256, 16), _text(64, 2, 2, 256), 64),
  "small": (
    encoder_presets.image("vit"),
    encoder_presets.text("transformer"),
    128,
  ),
  "base": (_vit(384, 12, 6, 1536, 8), _text(384, 12, 6, 1536), 32),
  "vit_b16": (_vit(768, 12, 12, 3072, 16), _text(512, 12, 8, 2048), 256),
}
# Settings other than the towers where a size differs from the default experiment.
OVERRIDES = {"vit_b16": {"image_size": 224, "embed_dim": 512}}


def config_for(size: str, batch_size: int = 0, dtype: str = "float32"):
  """The experiment config of `size` (image + text, CLIP loss)."""
  if size not in SIZES:
    raise ValueError(f"unknown size {size!r}; expected one of {sorted(SIZES)}")
  image, text, default_batch = SIZES[size]
  c = shapes_contrastive.get_config()
  c.data.speech = False
  c.model.image = image
  c.model.text = text
  c.model.modalities = ("image", "text")
  c.batch_size = batch_size or default_batch
  overrides = OVERRIDES.get(size, {})
  if "image_size" in overrides:
    c.data.image_size = overrides["image_size"]
  if "embed_dim" in overrides:
    c.model.embed_dim = overrides["embed_dim"]
  c.dtype = dtype
  c.optim.warmup_steps = 10
  c.total_steps = 1000
  return c


def random_batch(config, seed: int = 0) -> dict[str, np.ndarray]:
  """A batch of the config's input spec: uint8 images, token ids, prefix masks."""
  rng = np.random.default_rng(seed)
  data = datasets.build(config.data).spec
  spec = data.batch(config.batch_size)
  b, length = spec["text"].shape
  vocab = data.vocab_size
  lengths = rng.integers(3, length + 1, size=b)
  mask = np.arange(length)[None, :] < lengths[:, None]
  return {
    "image": rng.integers(0, 256, size=spec["image"].shape, dtype=np.uint8),
    "text": np.where(mask, rng.integers(1, vocab, size=(b, length)), 0).astype(np.int32),
    "text_mask": mask,
  }


def _transformer_flops(tokens: int, width: int, depth: int, mlp: int) -> float:
  """Forward matmul FLOPs of one sequence through a pre-LN Transformer stack."""
  projections = 2 * tokens * (4 * width * width + 2 * width * mlp)  # qkv, out, MLP
  attention = 2 * 2 * tokens * tokens * width  # q.k scores and the weighted sum of v
  return depth * (projections + attention)


def _vit_flops(image_size: int, enc: dict) -> float:
  p, width = enc["patch_size"], enc["width"]
  grid = image_size // p
  if enc.get("stem", "patch") == "conv":
    stem, channels, side = 0.0, 3, image_size
    steps = int(math.log2(p))
    for i in range(steps):
      out = max(width >> (steps - 1 - i), 8)
      side //= 2
      stem += 2 * side * side * 9 * channels * out
      channels = out
  else:
    stem = 2 * grid * grid * p * p * 3 * width
  return stem + _transformer_flops(grid * grid, width, enc["depth"], enc["mlp_dim"])


def model_flops_per_step(config) -> float:
  """Analytic matmul FLOPs of one train step (forward + backward = 3x forward).

  Counts the dense layers, convolutions, attention and the `[B, B]` logits;
  not elementwise work (norms, softmax, GELU, optimizer), as MFU is usually
  stated. The text tower's embedding lookup has no matmul.
  """
  b = config.batch_size
  image, text, d = config.model.image, config.model.text, config.model.embed_dim
  per_example = (
    _vit_flops(config.data.image_size, image)
    + _transformer_flops(config.data.max_text_len, text["width"], text["depth"], text["mlp_dim"])
    + 2 * (image["width"] + text["width"]) * d
  )  # projections
  logits = 2 * b * b * d
  return 3 * (b * per_example + logits)
