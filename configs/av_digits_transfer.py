r"""Pretrain -> fine-tune on `av_digits`: image and speech towers learned
contrastively from (digit picture, spoken digit) pairs start the fusion
classifier, which then learns the digit from some or all of the labels.

  python train.py --config configs/av_digits_transfer.py:stage=pretrain --workdir /tmp/avd-pre
  python train.py --config configs/av_digits_transfer.py:init=/tmp/avd-pre,labels=0.1 \
      --workdir /tmp/avd-finetune
  python train.py --config configs/av_digits_transfer.py:labels=0.1 --workdir /tmp/avd-scratch

Variants: stage=pretrain|finetune, init=WORKDIR, labels=F, freeze_steps=N,
seed=N, tiny, steps=N, batch_size=N, workers=N, as in shapes_transfer.py. Both
stages use av_digits_classify.py's towers and data (the pretraining ignores
the labels).
"""

import os

from cmjax import config_utils
from cmjax.pretrained import recipes

HERE = os.path.dirname(os.path.abspath(__file__))
TOWERS = ("image", "audio")


def get_config(arg=None):
  arg = config_utils.parse_arg(arg, **recipes.TRANSFER_ARGS)
  common = recipes.base_arg(arg)
  c = config_utils.load_config(os.path.join(HERE, "av_digits_classify.py"), common)
  c.seed = arg.seed
  if arg.stage == "pretrain":
    recipes.contrastive_pretraining(c, TOWERS, embed_dim=16 if arg.tiny else 64)
    if arg.tiny:
      c.evals.retrieval.update(num_examples=32, batch_size=16)
  elif arg.stage == "finetune":
    recipes.finetune_from(c, arg.init, TOWERS, arg.labels, arg.freeze_steps)
  else:
    raise ValueError(f"config argument stage={arg.stage!r}; expected 'pretrain' or 'finetune'")
  return c
