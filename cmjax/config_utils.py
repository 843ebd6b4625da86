"""Config helpers: the strict `get_config(arg)` argument parser and duration resolution.

A config file is `configs/NAME.py` with `get_config(arg=None) -> ConfigDict`. The
`arg` is what follows the colon in `--config configs/NAME.py:tiny,batch_size=64`:
a comma-separated list of `key=value` pairs or bare flags (`tiny` means
`tiny=True`). Only keys the config declares are accepted, so a typo stops the run
instead of being silently ignored.
"""

from __future__ import annotations

import ast
import importlib.util
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
          f"{', '.join(sorted(defaults))}.")
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
      raise ValueError(
          f"Config argument {key!r} expects a number, got {raw!r}.") from None
    if isinstance(default, int) and not (isinstance(value, int) or
                                         float(value).is_integer()):
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


_UNITS = ("steps", "epochs", "examples")


def resolve_steps(config: Any, prefix: str, *, batch_size: int,
                  num_train_examples: int | None, default: int | None = None) -> int:
  """Turns `{prefix}_steps`, `{prefix}_epochs` or `{prefix}_examples` into steps.

  Exactly one of the three may be set (not None). Epochs need the size of the
  training split. Returns `default` when none is set (or raises if no default).
  """
  given = {u: config.get(f"{prefix}_{u}") for u in _UNITS}
  given = {u: v for u, v in given.items() if v is not None}
  if len(given) > 1:
    raise ValueError(
        f"Set only one of {', '.join(f'{prefix}_{u}' for u in given)}; got {given}.")
  if not given:
    if default is None:
      raise ValueError(
          f"Set one of {prefix}_steps, {prefix}_epochs or {prefix}_examples.")
    return default
  (unit, value), = given.items()
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
      name="adamw", lr=2e-3, b1=0.9, b2=0.98, weight_decay=0.05,
      grad_clip_norm=1.0, warmup_steps=100, warmup_epochs=None,
      warmup_examples=None, min_lr_ratio=0.02)
  c.mesh = dict(data=-1, fsdp=1, model=1)
  c.sharding_rules = [
      ["batch", ["data", "fsdp"]],
      ["embed", "fsdp"],
      ["mlp", "model"],
      ["heads", "model"],
      ["vocab", "model"],
  ]
  c.dtype = "float32"
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


def apply_common_overrides(c, arg) -> None:
  """The `steps=`, `batch_size=` and `workers=` config arguments (0 / -1: unset)."""
  if arg.steps:
    c.total_steps = arg.steps
  if arg.batch_size:
    c.batch_size = arg.batch_size
  if arg.workers >= 0:
    c.data.num_workers = arg.workers


def fusion_config(name: str, sizes: dict) -> dict:
  """`config.model.fusion` for method `name`: its name plus the `sizes`
  (width, depth, num_heads, ...) that the method takes."""
  from cmjax.models.fusion import get_fusion_cls  # pylint: disable=g-import-not-at-top
  fields = get_fusion_cls(name).__dataclass_fields__
  return dict(name=name, **{k: v for k, v in sizes.items() if k in fields})


def apply_imbalance_options(c, arg) -> None:
  """The `balance=none|weights|resample` and `augment=N` config arguments."""
  if arg.balance not in ("none", "weights", "resample"):
    raise ValueError(f"config argument balance={arg.balance!r}; expected none, weights "
                     "or resample")
  c.loss.class_weights = "balanced" if arg.balance == "weights" else None
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
  c.total_steps = 6
  c.optim.warmup_steps = 2
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


def set_classification_defaults(c, *, missing_fractions, noise_levels) -> None:
  """Loss, optimiser, bookkeeping and the final test-set evaluator of a
  supervised classification config (shapes_classify, av_digits_classify)."""
  c.loss = dict(name="classification")
  set_training_defaults(c)
  c.optim.lr = 1e-3
  c.optim.warmup_steps = 50
  c.evals = dict(
      classification=dict(type="classification", every_steps=0, split="test",
                          num_examples=1000, batch_size=250,
                          missing_fractions=missing_fractions,
                          noise_levels=noise_levels),
  )
