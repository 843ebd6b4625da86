r"""Supervised multimodal classification on `shapes`: image + caption + speech -> labels.

  python train.py --config configs/shapes_classify.py --workdir /tmp/cmjax-classify
  python train.py --config configs/shapes_classify.py:fusion=gated,modalities=image+audio \
      --workdir /tmp/cmjax-gated

The task is the shape of the scene's first object ('label', 8 classes), or
with `tasks=attributes` three heads: its shape, colour and size.

Variants (after the colon, comma separated):
  fusion=NAME           a fusion method (cmjax.models.fusion.known_fusions()),
                        default concat
  modalities=A+B        the modalities used (default image+text+audio); one
                        modality gives a unimodal baseline
  tasks=label|attributes
  missing=S           missing-modality strategy: mask, learned, mean or predict
  balance=B           class imbalance remedy: none, weights (balanced class
                      weights in the loss) or resample (balanced resampling)
  augment=N           random image shifts of up to N pixels in training
  class_skew=S        Zipf exponent of the train labels (0 = balanced)
  max_objects=N       1..3 objects per scene (default 2; with 1, the image alone
                      determines the label)
  seed=N              the run's seed (data order, initialisation)
  modality_dropout=P    training-time probability of dropping a modality
  tiny, steps=N, batch_size=N, workers=N   as in shapes_contrastive.py
"""

import ml_collections

from cmjax import config_utils

HEADS = {"label": {"label": 8}, "attributes": {"shape_label": 8, "color_label": 8, "size_label": 2}}


def get_config(arg=None):
  arg = config_utils.parse_arg(
    arg,
    **config_utils.CLASSIFIER_ARGS,
    modalities="image+text+audio",
    tasks="label",
    modality_dropout=0.0,
    balance="none",
    augment=0,
    class_skew=0.0,
    max_objects=2,
  )
  if arg.tasks not in HEADS:
    raise ValueError(f"config argument tasks={arg.tasks!r}; expected one of {sorted(HEADS)}")
  modalities = tuple(arg.modalities.split("+"))
  c = ml_collections.ConfigDict()
  c.seed = arg.seed
  c.data = dict(
    name="shapes",
    num_train=10_000,
    image_size=64,
    min_objects=1,
    max_objects=arg.max_objects,
    domain=0,
    class_skew=arg.class_skew,
    speech="audio" in modalities,
    sample_rate=16_000,
    max_speech_seconds=3.5,
    tokenizer="word",
    max_text_len=20,
    num_workers=0,
  )
  c.batch_size = 128
  c.total_steps = 300
  c.total_epochs = None
  c.total_examples = None

  c.model = dict(
    name="fusion_classifier",
    modalities=modalities,
    image=dict(name="vit", patch_size=8, width=64, depth=2, num_heads=4, mlp_dim=128, stem="conv"),
    text=dict(name="transformer", width=64, depth=1, num_heads=4, mlp_dim=128),
    audio=dict(name="cnn", n_fft=400, hop_length=320, n_mels=48, widths=(32, 64, 64), width=64),
    fusion=config_utils.fusion_config(arg.fusion, tiny=arg.tiny),
    heads=HEADS[arg.tasks],
    modality_dropout=arg.modality_dropout,
    missing=arg.missing,
  )
  config_utils.set_classification_defaults(c, missing_fractions=(0.5, 1.0), noise_levels=(0.5,))

  if arg.tiny:
    config_utils.shrink_to_tiny(c)
    c.data.max_speech_seconds = 2.0
    c.model.image = dict(name="vit", patch_size=16, width=16, depth=1, num_heads=2, mlp_dim=32)
    c.model.text = dict(name="transformer", width=16, depth=1, num_heads=2, mlp_dim=32)
    c.model.audio = dict(name="cnn", n_fft=400, hop_length=320, n_mels=16, widths=(8, 16), width=16)

  config_utils.apply_imbalance_options(c, arg)
  config_utils.apply_common_overrides(c, arg)
  return c
