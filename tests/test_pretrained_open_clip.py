"""cmjax's `contrastive` model with weights converted from an open_clip state dict
computes what open_clip's `CLIP` computes: tiny random models made here (no
download), with quick-GELU (OpenAI's weights) and exact GELU.

open_clip is a test-only dependency installed without its dependencies
(`pip install --no-deps open_clip_torch==3.3.0`; they would pull torchvision);
its model module is imported without the package's `__init__`, which imports
torchvision, with a stand-in for the one torchvision name it reads at import.
"""

import importlib.util
import os
import sys
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")
if importlib.util.find_spec("open_clip") is None:
  pytest.skip("open_clip_torch is not installed", allow_module_level=True)

import jax  # noqa: E402

from cmjax import sharding  # noqa: E402
from cmjax.models import registry  # noqa: E402
from cmjax.pretrained import open_clip_weights  # noqa: E402

CLIP_STATS = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))
VOCAB = 99


def _open_clip_model_module():
  """`open_clip.model` without `open_clip/__init__` (torchvision)."""
  import transformers  # noqa: F401  (its own torchvision probe must see the real state)

  if "open_clip.model" in sys.modules:
    return sys.modules["open_clip.model"]
  folder = os.path.dirname(importlib.util.find_spec("open_clip").origin)
  package = types.ModuleType("open_clip")
  package.__path__ = [folder]
  misc = types.ModuleType("torchvision.ops.misc")
  misc.FrozenBatchNorm2d = None  # used only by ResNet towers, not built here
  stand_ins = {
    "torchvision": types.ModuleType("torchvision"),
    "torchvision.ops": types.ModuleType("torchvision.ops"),
    "torchvision.ops.misc": misc,
  }
  saved = {k: sys.modules.get(k) for k in stand_ins}
  sys.modules.update(stand_ins, open_clip=package)
  try:
    import open_clip.model as model_module  # pylint: disable=g-import-not-at-top
  finally:
    for k, v in saved.items():
      if v is None:
        sys.modules.pop(k, None)
      else:
        sys.modules[k] = v
  return model_module


@pytest.fixture(scope="module", params=["quick_gelu", "gelu"])
def tiny_open_clip(request, tmp_path_factory):
  from safetensors.torch import save_file

  oc = _open_clip_model_module()
  torch.manual_seed(0)
  model = oc.CLIP(
    embed_dim=20,
    vision_cfg=dict(layers=2, width=32, head_width=8, patch_size=8, image_size=32, mlp_ratio=1.25),
    text_cfg=dict(context_length=16, vocab_size=VOCAB, width=24, heads=3, layers=2),
    quick_gelu=request.param == "quick_gelu",
  )
  with torch.no_grad():  # non-trivial norms and biases; CLIP's ln_pre etc. start at 1 / 0
    for name, p in model.named_parameters():
      if "ln" in name or name.endswith("bias"):
        p.add_(0.1 * torch.randn_like(p))
  path = str(tmp_path_factory.mktemp("open_clip") / "open_clip_model.safetensors")
  save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
  return model.eval(), path, request.param


def test_open_clip_embeddings_equal_open_clip(tiny_open_clip):
  model, path, activation = tiny_open_clip
  cfg, params = open_clip_weights.load(path, activation=activation, head_width=8)
  assert cfg["text"]["num_heads"] == 3 and cfg["image"]["num_heads"] == 4
  rng = np.random.default_rng(1)
  images = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
  lengths = np.array([16, 6, 2])
  ids = rng.integers(1, VOCAB - 1, (3, 16))
  ids[np.arange(3), lengths - 1] = VOCAB - 1  # end-of-text: the largest id, last real token
  mask = np.arange(16)[None] < lengths[:, None]
  ids = np.where(mask, ids, 0).astype(np.int32)

  ours = registry.get_model(**cfg)
  img = np.asarray(ours.apply({"params": params}, images, method=ours.encode_image))
  txt = np.asarray(ours.apply({"params": params}, ids, mask, method=ours.encode_text))
  mean, std = (np.float32(s) for s in CLIP_STATS)
  pixels = torch.tensor(((images / np.float32(255) - mean) / std).transpose(0, 3, 1, 2))
  with torch.no_grad():
    ref_img = model.encode_image(pixels, normalize=True).numpy()
    ref_txt = model.encode_text(torch.tensor(ids, dtype=torch.long), normalize=True).numpy()
  np.testing.assert_allclose(img, ref_img, atol=2e-5, rtol=2e-5)
  np.testing.assert_allclose(txt, ref_txt, atol=2e-5, rtol=2e-5)
  np.testing.assert_allclose(params["logit_scale"], model.logit_scale.item(), rtol=1e-6)

  fresh = ours.init(jax.random.key(0), {"image": images, "text": ids, "text_mask": mask})
  shapes = lambda t: jax.tree_util.tree_map(np.shape, t)  # noqa: E731
  assert shapes(sharding.unbox(fresh["params"])) == shapes(params)


def test_what_open_clip_files_cannot_give_is_named(tiny_open_clip, tmp_path):
  _, path, _ = tiny_open_clip
  with pytest.raises(ValueError, match="only .safetensors.*save_file"):
    open_clip_weights.load(str(tmp_path / "model.bin"))
  with pytest.raises(ValueError, match="head_width=7"):
    open_clip_weights.load(path, head_width=7)
  with pytest.raises(ValueError, match="activation='relu'"):
    open_clip_weights.load(path, activation="relu")
