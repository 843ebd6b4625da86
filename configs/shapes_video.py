r"""Video <-> text contrastive training on `shapes` clips of moving objects.

Each example is an 8-frame 32x32 clip of the scene's objects moving left,
right, up or down, and captions naming every object and its direction ("a red
circle moving left and a small blue square going up"). Telling clips apart
needs both appearance and motion.

  python train.py --config configs/shapes_video.py --workdir /tmp/cmjax-video
  python train.py --config configs/shapes_video.py:video=tubelet_vit --workdir /tmp/cmjax-tubelet

Variants (after the colon, comma separated):
  video=E       frames (default: a ViT per frame + temporal Transformer) or
                tubelet_vit (one ViT over 2-frame x 8x8-pixel tubelets)
  tiny          a few steps of a very small model (the tests run it end to end)
  steps=N, batch_size=N, workers=N   as in shapes_contrastive.py

Results: README, "Video".
"""

import math

import ml_collections

from cmjax import config_utils

VIDEO_ENCODERS = {
  "frames": (
    dict(
      name="frames",
      frame_encoder=dict(
        name="vit", patch_size=8, width=64, depth=2, num_heads=4, mlp_dim=128, stem="conv"
      ),
      width=128,
      depth=2,
      num_heads=4,
      mlp_dim=256,
    ),
    dict(
      name="frames",
      frame_encoder=dict(name="vit", patch_size=16, width=16, depth=1, num_heads=2, mlp_dim=32),
      width=16,
      depth=1,
      num_heads=2,
      mlp_dim=32,
    ),
  ),
  "tubelet_vit": (
    dict(
      name="tubelet_vit",
      tubelet_frames=2,
      patch_size=8,
      width=128,
      depth=3,
      num_heads=4,
      mlp_dim=256,
    ),
    dict(
      name="tubelet_vit",
      tubelet_frames=2,
      patch_size=16,
      width=16,
      depth=1,
      num_heads=2,
      mlp_dim=32,
    ),
  ),
}


def get_config(arg=None):
  arg = config_utils.parse_arg(arg, tiny=False, steps=0, batch_size=0, workers=-1, video="frames")
  if arg.video not in VIDEO_ENCODERS:
    raise ValueError(
      f"config argument video={arg.video!r}; expected one of {sorted(VIDEO_ENCODERS)}"
    )
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.data = dict(
    name="shapes",
    num_train=10_000,
    image_size=32,  # the still image is unused here; keep it small
    min_objects=1,
    max_objects=2,
    domain=0,
    class_skew=0.0,
    speech=False,
    sample_rate=16_000,
    max_speech_seconds=3.5,
    video_frames=8,
    video_size=32,
    text_field="video_captions",
    tokenizer="word",
    max_text_len=32,
    num_workers=0,
  )
  c.batch_size = 128
  c.total_steps = 800
  c.total_epochs = None
  c.total_examples = None

  c.model = dict(
    name="contrastive",
    modalities=("video", "text"),
    embed_dim=128,
    video=dict(VIDEO_ENCODERS[arg.video][int(arg.tiny)]),
    text=dict(name="transformer", width=128, depth=2, num_heads=4, mlp_dim=256),
    logit_scale_init=math.log(1 / 0.07),
    logit_bias_init=0.0,
  )
  c.objectives = dict(contrastive=dict(type="clip", sharded=False))  # see shapes_contrastive.py
  config_utils.set_training_defaults(c)

  c.evals = dict(
    retrieval=dict(
      type="retrieval",
      every_steps=400,
      split="test",
      num_examples=1000,
      num_captions=5,
      batch_size=250,
    ),
  )

  if arg.tiny:
    config_utils.shrink_to_tiny(c)
    c.data.video_frames = 4
    c.model.embed_dim = 16
    c.model.text = dict(name="transformer", width=16, depth=1, num_heads=2, mlp_dim=32)

  config_utils.apply_common_overrides(c, arg)
  return c
