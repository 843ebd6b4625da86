r"""Pretrain -> fine-tune on `shapes`: a contrastive run's image and text towers
start the fusion classifier, which then learns from some or all of the labels.

  # 1. the towers, learned contrastively from image-caption pairs (no labels)
  python train.py --config configs/shapes_transfer.py:stage=pretrain --workdir /tmp/pre
  # 2. the classifier from them, on 10% of the training labels
  python train.py --config configs/shapes_transfer.py:init=/tmp/pre,labels=0.1 \
      --workdir /tmp/finetune
  # the same classifier from scratch, at the same steps, for comparison
  python train.py --config configs/shapes_transfer.py:labels=0.1 --workdir /tmp/scratch

Variants (after the colon, comma separated):
  stage=pretrain|finetune   (default finetune)
  init=WORKDIR        a pretrain run whose newest verified towers start the
                      classifier (config.init_from); empty: from scratch
  labels=F            the fraction of the 10,000 labelled training scenes the
                      classifier sees (1.0, 0.1, 0.01)
  freeze_steps=N      the loaded towers stay locked for the first N steps
                      (optim.groups unfreeze_at), then fine-tune
  seed=N, tiny, steps=N, batch_size=N, workers=N   as in shapes_classify.py

Both stages build the towers from `TOWERS` (the classifier's own sizes), so
every parameter the pretrain run saves fits the classifier; the task is the
first object's shape (8 classes), the pretraining image-text only.
"""

import os

from cmjax import config_utils
from cmjax.pretrained import recipes

HERE = os.path.dirname(os.path.abspath(__file__))
TOWERS = dict(
  image=dict(name="vit", patch_size=8, width=64, depth=2, num_heads=4, mlp_dim=128, stem="conv"),
  text=dict(name="transformer", width=64, depth=1, num_heads=4, mlp_dim=128),
)
TINY_TOWERS = dict(
  image=dict(name="vit", patch_size=16, width=16, depth=1, num_heads=2, mlp_dim=32),
  text=dict(name="transformer", width=16, depth=1, num_heads=2, mlp_dim=32),
)
NUM_TRAIN = 10_000


def get_config(arg=None):
  arg = config_utils.parse_arg(arg, **recipes.TRANSFER_ARGS)
  common = recipes.base_arg(arg)
  towers = TINY_TOWERS if arg.tiny else TOWERS
  if arg.stage == "pretrain":
    c = config_utils.load_config(os.path.join(HERE, "shapes_contrastive.py"), common)
    c.data.speech = False
    c.model.modalities = ("image", "text")
    c.model.image, c.model.text = dict(towers["image"]), dict(towers["text"])
    c.model.audio = None
  elif arg.stage == "finetune":
    c = config_utils.load_config(
      os.path.join(HERE, "shapes_classify.py"), f"{common},modalities=image+text"
    )
    c.model.image, c.model.text = dict(towers["image"]), dict(towers["text"])
    recipes.finetune_from(c, arg.init, ("image", "text"), arg.labels, arg.freeze_steps)
  else:
    raise ValueError(f"config argument stage={arg.stage!r}; expected 'pretrain' or 'finetune'")
  c.seed = arg.seed
  return c
