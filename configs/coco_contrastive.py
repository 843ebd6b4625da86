r"""Contrastive image-text training on COCO captions (Karpathy splits), from TFDS.

  # once, where TensorFlow is installed (README: "TFDS datasets"):
  #   tfds build coco_captions --data_dir=/data/tfds --file_format=array_record
  python train.py --config configs/coco_contrastive.py \
      --config.data.tfds_data_dir=/data/tfds --workdir /tmp/cmjax-coco

`files_contrastive.py` with `tfds=coco_captions`: each image with one of its
five captions drawn per visit (`config.data.fields.text='captions/text'`),
trained on the 'train' split (82,783 images), retrieval scored on the first
1,000 of 'val'. Its variants (`tiny`, `steps=N`, `image=E`, `loss=siglip`,
...) work here too; `config.data.image_size` sets the resolution.
"""

import os

from cmjax import config_utils


def get_config(arg=None):
  arg = f"tfds=coco_captions,{arg}" if arg else "tfds=coco_captions"
  c = config_utils.load_config(os.path.join(os.path.dirname(__file__), "files_contrastive.py"), arg)
  # Over 82k images a pass is long: count training in steps, not passes.
  if not c.total_steps:
    c.total_epochs, c.total_steps = None, 20_000
  return c
