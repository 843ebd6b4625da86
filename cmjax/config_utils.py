"""Config helpers: the strict `get_config(arg)` argument parser and duration resolution.

A config file is `configs/NAME.py` with `get_config(arg=None) -> ConfigDict`. The
`arg` is what follows the colon in `--config configs/NAME.py:tiny,batch_size=64`:
a comma-separated list of `key=value` pairs or bare flags (`tiny` means
`tiny=True`). Only keys the config declares are accepted, so a typo stops the run
instead of being silently ignored.
"""

from __future__ import annotations

import ast
import copy
import difflib
import importlib.util
import math
import os
from typing import Any

import ml_collections


def parse_arg(arg: str | None, **defaults: Any) -> ml_collections.ConfigDict:
  """Parses `"tiny,batch_size=64"` against `defaults`; unknown keys raise ValueError.

  Values are converted to the type of the default (bool, int, float, str).
  """
  out = ml_collections.ConfigDict(defaults)
  if not arg:
    return out
  for item in arg.split(","):
    item = item.strip()
    if not item:
      continue
    key, sep, raw = item.partition("=")
    key = key.strip()
    if key not in defaults:
      raise ValueError(
        f"Unknown config argument {key!r} in {arg!r}; this config accepts: "
        f"{', '.join(sorted(defaults))}."
      )
    default = defaults[key]
    if not sep:  # a bare word is a flag
      if not isinstance(default, bool):
        raise ValueError(f"Config argument {key!r} needs a value: {key}=...")
      out[key] = True
      continue
    out[key] = _convert(key, raw.strip(), default)
  return out


def _convert(key: str, raw: str, default: Any) -> Any:
  if isinstance(default, bool):
    if raw.lower() in ("1", "true", "yes"):
      return True
    if raw.lower() in ("0", "false", "no"):
      return False
    raise ValueError(f"Config argument {key!r} expects true/false, got {raw!r}.")
  if isinstance(default, (int, float)) and not isinstance(default, bool):
    try:
      value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
      raise ValueError(f"Config argument {key!r} expects a number, got {raw!r}.") from None
    if isinstance(default, int) and not (isinstance(value, int) or float(value).is_integer()):
      raise ValueError(f"Config argument {key!r} expects an integer, got {raw!r}.")
    return type(default)(value)
  return raw


def load_config(path: str, arg: str | None = None) -> ml_collections.ConfigDict:
  """Runs `get_config(arg)` of the config file at `path` ("configs/x.py:arg" works too)."""
  if arg is None and ":" in os.path.basename(path):
    path, arg = path.rsplit(":", 1)
  if not os.path.exists(path):
    raise FileNotFoundError(f"No config file at {path}.")
  spec = importlib.util.spec_from_file_location("_cmjax_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def config_key_paths(config: Any, prefix: str = "") -> list[str]:
  """Dotted paths of every entry of `config`: nested dicts and their fields alike.

  `{"optim": {"lr": 1}}` gives `["optim", "optim.lr"]`; lists are leaves.
  """
  paths = []
  for key in config:
    path = f"{prefix}{key}"
    paths.append(path)
    value = config[key]
    if isinstance(value, (ml_collections.ConfigDict, dict)):
      paths.extend(config_key_paths(value, path + "."))
  return paths


def missing_key_prefix(config: Any, path: str) -> str | None:
  """The shortest prefix of the dotted `path` that `config` lacks, or None.

  Only dict entries are judged: a path through a list index (`a[0]`) or into a
  non-dict value is left to ml_collections, which knows those forms.
  """
  holder, parts = config, path.split(".")
  for i, part in enumerate(parts):
    if "[" in part or not isinstance(holder, (ml_collections.ConfigDict, dict)):
      return None
    if part not in holder:
      return ".".join(parts[: i + 1])
    holder = holder[part]
  return None


def close_config_keys(config: Any, path: str, n: int = 3) -> list[str]:
  """Up to `n` valid dotted keys of `config` closest to the unknown `path`.

  Names are compared by their last component only (a shared `optim.` prefix
  says nothing of `optim.zzz`): keys at the same level when similar
  (`optim.lrr` -> `optim.lr`), keys elsewhere when nearly identical, which
  finds a field given at the wrong level (`image_size` -> `data.image_size`).
  Same-level keys get a small bonus, so `bacth_size` suggests `batch_size`
  before `evals.retrieval.batch_size`.
  """
  parent, _, leaf = path.rpartition(".")
  scored = []
  for p in config_key_paths(config):
    p_parent, _, p_leaf = p.rpartition(".")
    ratio = difflib.SequenceMatcher(None, leaf, p_leaf).ratio()
    if p_parent == parent and ratio >= 0.6:
      scored.append((-(ratio + 0.15), p))
    elif ratio >= 0.8:
      scored.append((-ratio, p))
  return [p for _, p in sorted(scored)[:n]]


def unknown_override_message(config: Any, path: str, name: str = "config") -> str | None:
  """One line for the override `--{name}.{path}` of a key `config` lacks, else None.

  It names the unknown key and the closest valid ones (or, with none close,
  the keys at that level), instead of ml_collections' traceback.
  """
  missing = missing_key_prefix(config, path)
  if missing is None:
    return None
  close = close_config_keys(config, missing)
  if close:
    hint = "closest valid keys: " + ", ".join(f"{name}.{k}" for k in close)
  else:
    parent = missing.rpartition(".")[0]
    holder = config
    for part in parent.split(".") if parent else []:
      holder = holder[part]
    level = f"{name}.{parent}" if parent else name
    hint = f"{level} has: " + ", ".join(sorted(holder.keys()))
  shown = f"{name}.{path}" if missing == path else f"{name}.{missing} (in {name}.{path})"
  return f"Unknown config key {shown}; {hint}."


_UNITS = ("steps", "epochs", "examples")


def resolve_steps(
  config: Any,
  prefix: str,
  *,
  batch_size: int,
  num_train_examples: int | None,
  default: int | None = None,
) -> int:
  """Turns `{prefix}_steps`, `{prefix}_epochs` or `{prefix}_examples` into steps.

  Exactly one of the three may be set (not None). Epochs need the size of the
  training split. Returns `default` when none is set (or raises if no default).
  """
  given = {u: config.get(f"{prefix}_{u}") for u in _UNITS}
  given = {u: v for u, v in given.items() if v is not None}
  if len(given) > 1:
    raise ValueError(f"Set only one of {', '.join(f'{prefix}_{u}' for u in given)}; got {given}.")
  if not given:
    if default is None:
      raise ValueError(f"Set one of {prefix}_steps, {prefix}_epochs or {prefix}_examples.")
    return default
  ((unit, value),) = given.items()
  if value < 0:
    raise ValueError(f"{prefix}_{unit} must be >= 0, got {value}.")
  if unit == "steps":
    return int(value)
  if unit == "examples":
    return int(round(value / batch_size))
  if not num_train_examples:
    raise ValueError(f"{prefix}_epochs needs a training split of known size.")
  return int(round(value * num_train_examples / batch_size))


def set_training_defaults(c) -> None:
  """Sets the entries every experiment config shares; the config then overrides.

  optim (AdamW, warmup + cosine), mesh (pure data parallel over all devices),
  sharding_rules (logical axis -> mesh axes), dtype, gradient accumulation, logging and
  checkpointing cadence, peak_flops (None: measured at start for MFU).
  """
  c.optim = dict(
    name="adamw",
    lr=2e-3,
    b1=0.9,
    b2=0.98,
    weight_decay=0.05,
    grad_clip_norm=1.0,
    warmup_steps=100,
    warmup_epochs=None,
    warmup_examples=None,
    min_lr_ratio=0.02,
  )
  c.mesh = dict(data=-1, fsdp=1, model=1)
  c.sharding_rules = [
    ["batch", ["data", "fsdp"]],
    ["embed", "fsdp"],
    ["mlp", "model"],
    ["heads", "model"],
    ["vocab", "model"],
  ]
  c.dtype = "float32"
  # The train step (cmjax/steps.py): 'standard', 'ema', or one a config.imports module registers.
  c.step = "standard"
  if "imports" not in c:
    c.imports = ()  # modules imported first, whose registered parts configs may name
  # Micro-batches per step and how their gradients combine (cmjax/grad_accum.py).
  c.grad_accum_steps = 1
  c.grad_accum = "mean"
  # Train steps per compiled call (cmjax/multi_step.py). On CPU with train.py's
  # keep_freed_host_memory: ~1.03x over 1 at twice the compile time (README).
  c.steps_per_call = 4
  c.log_every_steps = 50
  c.checkpoint_every_steps = 200
  c.keep_checkpoints = 2
  c.peak_flops = None
  # Start a new run from another run's parameters (cmjax/init_from.py); path "": no.
  from cmjax import init_from  # pylint: disable=g-import-not-at-top

  c.init_from = dict(
    path="", step=None, rules=[], strict=False, resize_positions=init_from.RESIZE_POSITIONS
  )


def apply_common_overrides(c, arg) -> None:
  """The `steps=`, `batch_size=` and `workers=` config arguments (0 / -1: unset).

  With `tiny`, `steps=N` also moves the periodic evaluators to step N:
  `shrink_to_tiny` had set them to its own 6 steps, which would evaluate every
  6 steps of a longer tiny run. Log and checkpoint intervals stay as they are.
  """
  if arg.steps:
    c.total_steps, c.total_epochs, c.total_examples = arg.steps, None, None
    if arg.get("tiny"):
      for entry in c.get("evals", {}).values():
        if entry.get("every_steps"):  # 0: final evaluation only; stays so
          entry.every_steps = c.total_steps
  if arg.batch_size:
    c.batch_size = arg.batch_size
  if arg.workers >= 0:
    c.data.num_workers = arg.workers


# The fusion classifiers' sizes (full, tiny) and the config arguments they share.
FUSION_SIZES = dict(width=128, depth=1, num_heads=4, mlp_dim=256)
TINY_FUSION_SIZES = dict(width=16, depth=1, num_heads=2, mlp_dim=32)
CLASSIFIER_ARGS = dict(
  tiny=False, steps=0, batch_size=0, workers=-1, fusion="concat", missing="mask", seed=0
)


def fusion_config(name: str, sizes: dict | None = None, *, tiny: bool = False) -> dict:
  """`config.model.fusion` for method `name`: its name plus the `sizes`
  (width, depth, num_heads, ...; default `FUSION_SIZES`, or `TINY_FUSION_SIZES`
  with `tiny`) that the method takes."""
  from cmjax.models.fusion import get_fusion_cls  # pylint: disable=g-import-not-at-top

  if sizes is None:
    sizes = TINY_FUSION_SIZES if tiny else FUSION_SIZES
  fields = get_fusion_cls(name).__dataclass_fields__
  return dict(name=name, **{k: v for k, v in sizes.items() if k in fields})


def apply_imbalance_options(c, arg) -> None:
  """The `balance=none|weights|resample` and `augment=N` config arguments."""
  if arg.balance not in ("none", "weights", "resample"):
    raise ValueError(f"config argument balance={arg.balance!r}; expected none, weights or resample")
  c.objectives.classification.class_weights = "balanced" if arg.balance == "weights" else None
  c.data.resample = "balanced" if arg.balance == "resample" else None
  c.data.augment_shift = arg.augment


def shrink_to_tiny(c) -> None:
  """The training side of every config's `tiny` variant: a few steps on 256 examples.

  6 steps of 16, checkpoints at step 3 (so the tests see a resume point), logs
  every 2 steps, and every evaluator on 32 test examples in batches of 16 (an
  evaluator that ran periodically runs at the last step). The config shrinks
  its own model after calling this.
  """
  c.data.num_train = 256
  c.batch_size = 16
  c.total_steps, c.total_epochs, c.total_examples = 6, None, None
  c.optim.warmup_steps, c.optim.warmup_epochs, c.optim.warmup_examples = 2, None, None
  c.log_every_steps = 2
  c.checkpoint_every_steps = 3
  c.steps_per_call = 1  # one executable to compile, not two
  c.peak_flops = 1e11  # skips measuring the machine's peak at start
  for entry in c.get("evals", {}).values():
    entry.update(num_examples=32, batch_size=16)
    if entry.get("every_steps"):
      entry.every_steps = c.total_steps
    if "num_captions" in entry:
      entry.num_captions = 2


# The `loss=` choices of the contrastive configs: the `config.objectives`
# terms, the changes to `config.model` (the alignment objectives' batch
# statistics want unnormalised embeddings; the autoencoder and CoCa add
# decoders) and the evaluators they add.
_CLIP = dict(type="clip", weight=1.0, sharded=False)  # sharded: per-device blocks
SHARED_OBJECTIVES = {
  "clip": dict(objectives=dict(contrastive=_CLIP)),
  "siglip": dict(objectives=dict(contrastive=dict(_CLIP, type="siglip"))),
  "align": dict(
    objectives=dict(align=dict(type="alignment", regularizer="none")), model=dict(normalize=False)
  ),
  "vicreg": dict(
    objectives=dict(align=dict(type="alignment", regularizer="vicreg")),
    model=dict(normalize=False),
  ),
  "barlow": dict(
    objectives=dict(align=dict(type="alignment", regularizer="barlow")),
    model=dict(normalize=False),
  ),
  "autoencoder": dict(
    objectives=dict(recon=dict(type="reconstruction")),
    model=dict(name="cross_modal_autoencoder", normalize=False),
    evals=dict(reconstruction=dict(type="reconstruction", every_steps=0, split="test")),
  ),
  "coca": dict(
    objectives=dict(contrastive=_CLIP, caption=dict(type="captioning", weight=2.0)),
    model=dict(name="captioner", source="image"),
    model_sizes=lambda tiny: dict(decoder=decoder_preset(tiny)),
    evals=dict(captioning=dict(type="captioning", every_steps=0, split="test")),
  ),
  # Image-text matching (ALBEF-style) with the data's hard negative captions,
  # and with in-batch negatives mined from the contrastive similarities too.
  "itm": dict(
    objectives=dict(contrastive=_CLIP, itm=dict(type="matching")),
    model=dict(name="matcher", pair=("image", "text"), negatives=("dataset",)),
    model_sizes=lambda tiny: dict(fusion=matching_fusion_preset(tiny)),
    data=dict(negative_text=True),
  ),
  "itm_mined": dict(
    objectives=dict(contrastive=_CLIP, itm=dict(type="matching")),
    model=dict(name="matcher", pair=("image", "text"), negatives=("dataset", "mined")),
    model_sizes=lambda tiny: dict(fusion=matching_fusion_preset(tiny)),
    data=dict(negative_text=True),
  ),
}
SHARED_OBJECTIVES["autoencoder"]["model_sizes"] = lambda tiny: dict(
  decoders=dict(
    image=dict(patch_size=8, **_token_decoder_sizes(tiny)),
    text=decoder_preset(tiny),
    audio=dict(chunk=4, **_token_decoder_sizes(tiny)),
  )
)


def set_contrastive_model(c, arg, embed_dim: int = 128) -> None:
  """`config.model` (a `tri_contrastive` with the `image=`, `text=`, `audio=`
  encoder presets, cmjax/encoder_presets.py) and `config.objectives` (the
  `loss=` choice of SHARED_OBJECTIVES, with SigLIP's temperature and bias
  init) of the contrastive configs. Returns the evaluators the choice adds."""
  from cmjax import encoder_presets  # pylint: disable=g-import-not-at-top

  if arg.loss not in SHARED_OBJECTIVES:
    raise ValueError(
      f"config argument loss={arg.loss!r}; expected one of {list(SHARED_OBJECTIVES)}"
    )
  choice = copy.deepcopy(SHARED_OBJECTIVES[arg.loss])
  siglip = arg.loss == "siglip"
  model = dict(
    name="tri_contrastive",
    embed_dim=embed_dim,
    image=encoder_presets.image(arg.image, arg.tiny),
    text=encoder_presets.text(arg.text, arg.tiny),
    audio=encoder_presets.audio(arg.audio, arg.tiny),
    logit_scale_init=math.log(10.0) if siglip else math.log(1 / 0.07),
    logit_bias_init=-10.0 if siglip else 0.0,
  )
  c.model = dict(model, **choice.get("model", {}))
  if "model_sizes" in choice:  # the choice's own parts (decoders, matching head), sized
    c.model.update(choice["model_sizes"](arg.tiny))
  if "data" in choice:
    c.data.update(choice["data"])
  c.objectives = choice["objectives"]
  return choice.get("evals", {})


def _token_decoder_sizes(tiny: bool) -> dict:
  """The autoencoder's image and audio token decoders."""
  if tiny:
    return dict(width=16, depth=1, num_heads=2, mlp_dim=32)
  return dict(width=128, depth=1, num_heads=4, mlp_dim=256)


def matching_fusion_preset(tiny: bool = False) -> dict:
  """The matching head of the 'itm' objectives: cross-attention between the towers' tokens."""
  if tiny:
    return dict(name="cross_attention", width=16, depth=1, num_heads=2, mlp_dim=32)
  return dict(name="cross_attention", width=128, depth=2, num_heads=4, mlp_dim=256)


def decoder_preset(tiny: bool = False) -> dict:
  """The text decoder of the captioning configs (`TextDecoder` settings)."""
  if tiny:
    return dict(width=16, depth=1, num_heads=2, mlp_dim=32)
  return dict(width=128, depth=2, num_heads=4, mlp_dim=512, dropout_rate=0.1)


def set_classification_defaults(c, *, missing_fractions, noise_levels) -> None:
  """Loss, optimiser, bookkeeping and the final test-set evaluator of a
  supervised classification config (shapes_classify, av_digits_classify)."""
  c.objectives = dict(classification=dict(type="classification", class_weights=None))
  set_training_defaults(c)
  c.optim.lr = 1e-3
  c.optim.warmup_steps = 50
  c.evals = dict(
    classification=dict(
      type="classification",
      every_steps=0,
      split="test",
      num_examples=1000,
      batch_size=250,
      missing_fractions=missing_fractions,
      noise_levels=noise_levels,
    ),
  )
