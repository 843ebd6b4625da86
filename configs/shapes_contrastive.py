r"""Tri-modal (image / text / speech) contrastive training on the built-in `shapes` data.

This is the default experiment of `train.py`:

  python train.py --workdir /tmp/cmjax-run
  python train.py --config configs/shapes_contrastive.py --workdir /tmp/cmjax-run

Variants (after the colon, comma separated):
  tiny          a few steps of a very small model (the tests run it end to end)
  loss=L        the objective: clip (default), siglip (sigmoid), align (squared
                distance alone: collapses), vicreg, barlow (alignment with
                VICReg's or Barlow Twins' anti-collapse term), autoencoder
                (cross-modal reconstruction), coca (clip + image captioning),
                itm (clip + an image-text matching head trained on the data's
                hard negative captions), itm_mined (and on in-batch negatives
                mined from the contrastive similarities, as ALBEF)
  seed=N        the run's seed (initialisation, data order, training examples)
  steps=N       override the number of training steps
  batch_size=N  global batch size
  image=E       image encoder: vit (default), resnet_gn (ResNet, GroupNorm),
                resnet_bn (ResNet, BatchNorm)
  text=E        text encoder: transformer (default), bow (a Transformer without
                positions: a bag of words), lstm, gru
  audio=E       audio encoder: transformer (default), cnn, ast

Encoder comparison (README, "Encoders"), e.g.:

  python train.py --config configs/shapes_contrastive.py:image=resnet_bn,steps=400 \
      --workdir /tmp/cmjax-resnet-bn

Expected result on a 2-core CPU (no GPU), measured with the first command above
(README, "Default run"): about 9 minutes in all (one of them generating the
data once), zero-shot shape / colour accuracy 0.90 / 1.00 on held-out
single-object images, image->text Recall@5 0.77 over 1,000 held-out images
(5 captions each), image<->speech Recall@5 about 0.67. `tiny` runs in ~20 s.
"""

import ml_collections

from cmjax import config_utils
from cmjax.data import shapes_text


def zeroshot_tasks() -> dict:
  """Zero-shot prompts on single-object scenes: a shape class is prompted in every
  colour ("a red circle", "a green circle", ...), a colour in every shape."""
  return dict(
    shape=dict(
      label="shape_label",
      classes=list(shapes_text.SHAPES),
      templates=[f"a {c} {{}}" for c in shapes_text.COLORS],
    ),
    color=dict(
      label="color_label",
      classes=list(shapes_text.COLORS),
      templates=[f"a {{}} {s}" for s in shapes_text.SHAPES],
    ),
  )


def get_config(arg=None):
  arg = config_utils.parse_arg(
    arg,
    tiny=False,
    loss="clip",
    seed=0,
    steps=0,
    batch_size=0,
    workers=-1,
    image="vit",
    text="transformer",
    audio="transformer",
  )
  c = ml_collections.ConfigDict()
  c.seed = arg.seed

  # ---- data ----
  c.data = dict(
    name="shapes",  # or "tfds:NAME" for a prepared TFDS (array_record) dataset
    tfds_data_dir=None,
    num_train=10_000,
    image_size=64,
    min_objects=1,
    max_objects=2,
    domain=0,
    class_skew=0.0,
    speech=True,
    sample_rate=16_000,
    max_speech_seconds=3.5,
    tokenizer="word",
    max_text_len=20,
    num_workers=0,  # grain worker processes (0: a prefetch thread)
  )
  c.batch_size = 128
  c.total_steps = 800
  c.total_epochs = None
  c.total_examples = None

  # ---- model ----
  # Encoders (full size, tiny size) per name: cmjax/encoder_presets.py.
  extra_evals = config_utils.set_contrastive_model(c, arg)

  config_utils.set_training_defaults(c)

  # ---- evaluation ----
  c.evals = dict(
    retrieval=dict(
      type="retrieval",
      every_steps=400,
      split="test",
      num_examples=1000,
      num_captions=5,
      batch_size=250,
    ),
    zeroshot=dict(
      type="zeroshot",
      every_steps=400,
      split="test",
      num_examples=1000,
      batch_size=250,
      tasks=zeroshot_tasks(),
      source_options=dict(min_objects=1, max_objects=1, speech=False),
    ),
    # What the image embedding knows of the first object's shape (frozen).
    probe=dict(
      type="linear_probe",
      every_steps=0,
      modality="image",
      label="shape_label",
      num_train=2000,
      split="test",
      num_examples=1000,
      source_options=dict(speech=False),  # images only: generated in seconds
    ),
    # True captions against attribute / relation / order swaps (chance 0.5).
    compositionality=dict(type="compositionality", every_steps=0, split="test", num_examples=1000),
    **extra_evals,
  )

  if arg.tiny:
    config_utils.shrink_to_tiny(c)
    c.data.max_speech_seconds = 2.0
    c.data.num_workers = 0
    c.model.embed_dim = 16

  config_utils.apply_common_overrides(c, arg)
  if arg.tiny:
    c.evals.probe.num_train = 64
    if not arg.loss.startswith("itm"):  # tested with the matching head's runs
      del c.evals["compositionality"]
  return c
