r"""Contrastive training on your own image-caption(-audio) pairs, listed in a manifest.

  python -m cmjax.data.export_example --out /tmp/own      # an example to try
  python train.py --config configs/files_contrastive.py \
      --config.data.manifest=/tmp/own/shapes/manifest.jsonl --workdir /tmp/cmjax-files

The manifest (JSONL or CSV; `cmjax/data/files.py` describes its columns) names
each example's image, caption(s) and optionally audio file, relative to the
manifest's folder, and its split. The model has a tower for every modality
column the manifest has (or `config.data.modalities`); held-out retrieval over
every pair of them is reported at the end.

Variants (after the colon, comma separated):
  tiny          a few steps of a very small model (the tests run it end to end)
  steps=N, batch_size=N, workers=N   as in shapes_contrastive.py
  image=E, text=E, audio=E           encoders, as in shapes_contrastive.py
  loss=L        clip (default), siglip, align, vicreg or barlow (as in
                shapes_contrastive.py)
  source=webdataset   tar shards instead of a manifest (webdataset_contrastive.py)
  tfds=NAME     a prepared TFDS dataset, e.g. coco_captions (coco_contrastive.py)
"""

import ml_collections

from cmjax import config_utils
from cmjax.data import files


def get_config(arg=None):
  arg = config_utils.parse_arg(
    arg,
    tiny=False,
    loss="clip",
    steps=0,
    batch_size=0,
    workers=-1,
    image="vit",
    text="transformer",
    audio="transformer",
    source="files",
    tfds="",
  )
  c = ml_collections.ConfigDict()
  c.seed = 0

  # ---- data (every key and its default: cmjax/data/files.py, data_config) ----
  c.data = files.data_config("tfds" if arg.tfds else arg.source, arg.tfds)
  c.batch_size = 64
  # In passes over the training rows, as datasets differ in size (steps=N
  # sets a number of steps instead).
  c.total_steps = None
  c.total_epochs = 40
  c.total_examples = None

  # ---- model ----
  # Encoders (full size, tiny size) per name: cmjax/encoder_presets.py.
  extra_evals = config_utils.set_contrastive_model(c, arg)

  config_utils.set_training_defaults(c)
  c.optim.warmup_steps, c.optim.warmup_epochs = None, 2

  # ---- evaluation (at the end) ----
  c.evals = dict(
    retrieval=dict(type="retrieval", every_steps=0, split="test", num_examples=1000),
    **extra_evals,
  )

  if arg.tiny:
    config_utils.shrink_to_tiny(c)
    c.model.embed_dim = 16
    c.data.max_audio_seconds = 2.0
    c.data.image_size = 32

  config_utils.apply_common_overrides(c, arg)
  return c
