r"""Supervised heads on your own files: a class, a set of classes, or a number.

  python -m cmjax.data.export_example --out /tmp/own
  # the digit's value (regression) from its picture and its spoken name
  python train.py --config configs/files_classify.py:task=regression,label=value \
      --config.data.manifest=/tmp/own/digits/manifest.jsonl --workdir /tmp/cmjax-digit-value
  # the set of shapes in a scene (multi-label) from the picture
  python train.py --config configs/files_classify.py:task=multilabel,label=shapes,modalities=image \
      --config.data.manifest=/tmp/own/shapes/manifest.jsonl --workdir /tmp/cmjax-shape-sets
  # one class per example (the default task)
  python train.py --config configs/files_classify.py:label=label \
      --config.data.manifest=/tmp/own/digits/manifest.jsonl --workdir /tmp/cmjax-digit-class
  # a TFDS dataset prepared once with `tfds build` (README: "TFDS datasets")
  python train.py --config configs/files_classify.py:tfds=cifar10 --workdir /tmp/cmjax-cifar10

A `fusion_classifier` (one encoder per modality, a fusion method, one head)
trained on the manifest column `label=`; the classification evaluator reports
accuracy and macro F1 (class), mAP and macro F1 (multi-label), or MAE, Pearson
r and the sign's accuracy and F1 (regression) on the 'test' rows.

Variants (after the colon, comma separated):
  task=K          class (default), multilabel or regression
  label=COLUMN    the manifest column holding the target (default 'label')
  modalities=A+B  e.g. image+audio; default: every modality the manifest has
  fusion=NAME     a fusion method (cmjax.models.fusion.known_fusions())
  missing=S       missing-modality strategy: mask, learned, mean or predict
  sentiment       the sentiment set-up: text + audio + image -> a score in
                  column 'sentiment', L1 loss, as CMU-MOSI is trained
  source=S        files (a manifest, default) or webdataset (tar shards)
  tfds=NAME       a prepared TFDS dataset instead, e.g. cifar10 or spoken_digit
                  (their layouts are known: cmjax/data/tfds_data.py)
  seed=N, tiny, steps=N, batch_size=N, workers=N
"""

import ml_collections

from cmjax import config_utils
from cmjax.data import files


def get_config(arg=None):
  arg = config_utils.parse_arg(
    arg,
    **config_utils.CLASSIFIER_ARGS,
    task="class",
    label="label",
    modalities="",
    sentiment=False,
    source="files",
    tfds="",
  )
  if arg.sentiment:
    arg.task, arg.label = "regression", "sentiment"
    arg.modalities = arg.modalities or "text+audio+image"
  if arg.task not in files.LABEL_TYPES:
    raise ValueError(f"config argument task={arg.task!r}; expected one of {files.LABEL_TYPES}")
  c = ml_collections.ConfigDict()
  c.seed = arg.seed
  c.data = files.data_config("tfds" if arg.tfds else arg.source, arg.tfds)
  c.data.update(
    modalities=tuple(m for m in arg.modalities.split("+") if m),
    image_size=48,
    max_audio_seconds=2.0,
    labels={arg.label: dict(column=arg.label, type=arg.task)},
  )
  c.batch_size = 64
  c.total_steps, c.total_epochs, c.total_examples = None, 60, None

  c.model = dict(
    name="fusion_classifier",
    modalities=c.data.modalities or None,  # None: every modality of the data
    image=dict(
      name="resnet", features=(32, 64, 128), blocks=(1, 1, 1), stem_stride=2, norm="group"
    ),
    text=dict(name="transformer", width=64, depth=1, num_heads=4, mlp_dim=128),
    audio=dict(name="cnn", n_fft=400, hop_length=160, n_mels=40, widths=(32, 64, 64), width=64),
    fusion=config_utils.fusion_config(arg.fusion, tiny=arg.tiny),
    heads=None,  # one head per target of the data
    missing=arg.missing,
  )
  config_utils.set_classification_defaults(c, missing_fractions=(), noise_levels=())
  c.optim.warmup_steps, c.optim.warmup_epochs = None, 2
  if arg.sentiment:
    c.objectives.classification.regression_loss = "l1"

  if arg.tiny:
    config_utils.shrink_to_tiny(c)
    c.model.image = dict(name="resnet", features=(8,), blocks=(1,), num_groups=4)
    c.model.text = dict(name="transformer", width=16, depth=1, num_heads=2, mlp_dim=32)
    c.model.audio = dict(name="cnn", n_fft=400, hop_length=320, n_mels=16, widths=(8, 16), width=16)
    c.data.max_audio_seconds = 1.0

  config_utils.apply_common_overrides(c, arg)
  return c
