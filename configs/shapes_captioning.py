r"""Captioning on `shapes`: a text decoder reads the image (or speech) tower's tokens.

  python train.py --config configs/shapes_captioning.py --workdir /tmp/cmjax-caption
  python train.py --config configs/shapes_captioning.py:coca --workdir /tmp/cmjax-coca
  python train.py --config configs/shapes_captioning.py:source=audio --workdir /tmp/cmjax-s2t

Same data, encoders and steps as shapes_contrastive.py. The decoder is trained
by teacher forcing ('captioning' objective); the 'captioning' evaluator
generates captions for held-out scenes (greedy, or `beam=K`) and scores BLEU-1..4
and CIDEr-D against every caption of the scene; 'nearest_caption' scores the
baseline that copies the caption of the most similar training scene.

Variants (after the colon, comma separated):
  coca          CoCa-style: a text tower too, 'clip' + 'captioning' as weighted
                terms (caption_weight=W, default 2 as in CoCa), plus retrieval
                and zero-shot evaluation
  source=M      the modality captioned: image (default) or audio (speech -> text)
  beam=K        beam width of the evaluator (1: greedy)
  caption_weight=W, seed=N, tiny, steps=N, batch_size=N, workers=N, image=E,
  text=E, audio=E (as in shapes_contrastive.py)
"""

import os

from cmjax import config_utils

HERE = os.path.dirname(os.path.abspath(__file__))


def get_config(arg=None):
  arg = config_utils.parse_arg(
    arg,
    coca=False,
    source="image",
    beam=1,
    caption_weight=2.0,
    seed=0,
    tiny=False,
    steps=0,
    batch_size=0,
    workers=-1,
    image="vit",
    text="transformer",
    audio="transformer",
  )
  if arg.source not in ("image", "audio"):
    raise ValueError(f"config argument source={arg.source!r}; expected 'image' or 'audio'")
  base = ",".join(
    f"{k}={arg[k]}" for k in ("tiny", "steps", "batch_size", "workers", "image", "text", "audio")
  )
  c = config_utils.load_config(os.path.join(HERE, "shapes_contrastive.py"), base)
  c.seed = arg.seed
  towers = (arg.source, "text") if arg.coca else (arg.source,)
  c.model.update(name="captioner", source=arg.source, modalities=towers)
  for m in ("image", "text", "audio"):
    if m not in towers:
      c.model[m] = None
  c.model.decoder = config_utils.decoder_preset(arg.tiny)
  c.data.speech = arg.source == "audio"
  caption = dict(type="captioning", weight=arg.caption_weight if arg.coca else 1.0)
  c.objectives = dict(caption=caption)
  evals = dict(
    captioning=dict(
      type="captioning",
      every_steps=0,
      split="test",
      num_examples=32 if arg.tiny else 500,
      batch_size=16 if arg.tiny else 100,
      beam_size=arg.beam,
    )
  )
  # The baseline: the caption of the most similar training example (by the
  # trained embedding with coca, else by pixels).
  if arg.coca or arg.source == "image":
    evals["nearest_caption"] = dict(
      type="nearest_caption",
      every_steps=0,
      features="embedding" if arg.coca else "pixels",
      modality=arg.source,
      split="test",
      num_train=c.data.num_train,
      num_examples=evals["captioning"]["num_examples"],
      batch_size=evals["captioning"]["batch_size"],
    )
  if arg.coca:
    c.objectives.contrastive = dict(type="clip", weight=1.0, sharded=False)
    evals.update(retrieval=c.evals.retrieval.to_dict())
    if arg.source == "image":
      evals.update(zeroshot=c.evals.zeroshot.to_dict())
  c.evals = evals
  return c
