"""The optimizer of `config.optim`, with parameter groups chosen by path regex.

  c.optim = dict(name="adamw", lr=1e-3, weight_decay=0.05, warmup_steps=100,
                 groups=[
                     ("text_encoder/.*", dict(frozen=True)),          # a locked tower (LiT)
                     (".*_proj/.*", dict(lr_mult=10.0, weight_decay=0.0)),
                 ])

A parameter's path is its keys joined by '/' (`image_encoder/block_0/mlp/wi/kernel`);
a rule's regex must match the path from its start (`re.match`), and the first rule
that matches decides. Settings of a rule: `frozen` (no update and no optimizer
state), `lr_mult` (times the base peak learning rate) or `lr` (its own peak),
`weight_decay`, `warmup_steps`, `min_lr_ratio`, `schedule` ('cosine' or
'constant'), `unfreeze_at` (locked, bit for bit, before this step; from it the
group's own warmup and decay run over the remaining steps: a pretrained tower
kept still while a fresh head settles). Parameters no rule matches follow `config.optim` itself; with
`groups_exhaustive=True` every parameter must be matched. A rule that matches no
parameter is a config error, as is (when exhaustive) a parameter no rule matches.
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import optax

from cmjax import clipping

OPTIMIZERS = ("adamw", "sgd")
GROUP_SETTINGS = (
  "frozen",
  "lr_mult",
  "lr",
  "weight_decay",
  "warmup_steps",
  "min_lr_ratio",
  "schedule",
  "unfreeze_at",
)
DEFAULT_GROUP = "default"
FROZEN = "frozen"


def decay_mask(params):
  """Weight decay on matrices only: not on biases, norms, temperature or bias scalars."""
  return jax.tree_util.tree_map(lambda p: jnp.ndim(p) >= 2, params)


def param_path(key_path) -> str:
  """`('image_encoder', 'block_0', 'kernel')` keys of a tree path -> 'image_encoder/block_0/kernel'."""
  parts = []
  for k in key_path:
    parts.append(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))))
  return "/".join(parts)


def param_paths(params) -> list[str]:
  return [param_path(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]


def _schedule(
  lr: float, total_steps: int, warmup_steps: int, min_lr_ratio: float, kind: str = "cosine"
) -> optax.Schedule:
  if kind == "constant":
    return optax.join_schedules(
      [optax.linear_schedule(0.0, lr, max(warmup_steps, 1)), optax.constant_schedule(lr)],
      [warmup_steps],
    )
  if kind != "cosine":
    raise ValueError(f"optimizer schedule {kind!r}; expected 'cosine' or 'constant'.")
  return optax.warmup_cosine_decay_schedule(
    init_value=0.0,
    peak_value=lr,
    warmup_steps=warmup_steps,
    # optax needs some steps after the warmup; a run that only warms up gets one.
    decay_steps=max(total_steps, warmup_steps + 1),
    end_value=lr * min_lr_ratio,
  )


def _update_rule(optim, schedule, weight_decay: float) -> list[optax.GradientTransformation]:
  """AdamW (decoupled decay) or SGD with momentum (decay added to the gradient)."""
  if optim.get("name", "adamw") == "adamw":
    return [
      optax.adamw(
        schedule,
        b1=optim.get("b1", 0.9),
        b2=optim.get("b2", 0.999),
        weight_decay=weight_decay,
        mask=decay_mask,
      )
    ]
  parts = []
  if weight_decay:
    parts.append(optax.add_decayed_weights(weight_decay, mask=decay_mask))
  parts.append(
    optax.sgd(schedule, momentum=optim.get("momentum", 0.9), nesterov=optim.get("nesterov", False))
  )
  return parts


def parse_groups(optim) -> list[tuple[str, re.Pattern, dict]]:
  """`[(label, compiled regex, settings)]` of `config.optim.groups`, checked."""
  out = []
  for i, rule in enumerate(optim.get("groups") or ()):
    where = f"config.optim.groups[{i}]"
    if not (isinstance(rule, Sequence) and len(rule) == 2 and isinstance(rule[0], str)):
      raise ValueError(f"{where}={rule!r}; expected (regex, dict of settings).")
    pattern, settings = rule[0], dict(rule[1] or {})
    unknown = sorted(set(settings) - set(GROUP_SETTINGS))
    if unknown:
      raise ValueError(
        f"{where} ({pattern!r}) has unknown settings {unknown}; known: {list(GROUP_SETTINGS)}."
      )
    try:
      regex = re.compile(pattern)
    except re.error as e:
      raise ValueError(f"{where}: bad regex {pattern!r}: {e}") from None
    out.append((FROZEN if settings.get("frozen") else f"group_{i}", regex, settings))
  return out


def group_labels(optim, params) -> Any:
  """The tree of group labels of `params` (same structure); raises on unmatched
  parameters when `config.optim.groups_exhaustive`."""
  groups = parse_groups(optim)
  exhaustive = bool(optim.get("groups_exhaustive", False))

  def label(key_path, _):
    path = param_path(key_path)
    for name, regex, _ in groups:
      if regex.match(path):
        return name
    if exhaustive:
      raise ValueError(
        f"parameter {path!r} is matched by no rule of config.optim.groups "
        "(config.optim.groups_exhaustive=True)."
      )
    return DEFAULT_GROUP

  return jax.tree_util.tree_map_with_path(label, params)


def check_groups(optim, params) -> dict[str, int]:
  """Raises naming a rule that matches no parameter (or an unmatched parameter when
  exhaustive). Returns {label: number of parameter arrays} for the log."""
  groups = parse_groups(optim)
  labels = jax.tree_util.tree_leaves(group_labels(optim, params))
  paths = param_paths(params)
  for i, (name, regex, _) in enumerate(groups):
    if not any(regex.match(p) for p in paths):
      raise ValueError(
        f"config.optim.groups[{i}] regex {regex.pattern!r} matches no "
        f"parameter; parameter paths look like {paths[:3]}."
      )
    del name
  return {name: labels.count(name) for name in sorted(set(labels))}


# Each numeric setting's valid range: (low, high, low inclusive, high inclusive).
_RANGES = {
  "lr": (0.0, math.inf, True, False),
  "lr_mult": (0.0, math.inf, True, False),
  "weight_decay": (0.0, math.inf, True, False),
  "b1": (0.0, 1.0, True, False),
  "b2": (0.0, 1.0, True, False),
  "momentum": (0.0, 1.0, True, False),
  "min_lr_ratio": (0.0, 1.0, True, True),
  "grad_clip_norm": (0.0, math.inf, True, False),  # 0 or None: no clipping
}


def check_settings(settings, where: str) -> None:
  """Raises naming `where.key` for a numeric setting outside its range (NaN,
  a negative learning rate, b2 >= 1, ...): such values train nothing or NaN."""
  for key, (low, high, low_in, high_in) in _RANGES.items():
    value = settings.get(key)
    if value is None or isinstance(value, bool):
      continue
    ok = isinstance(value, (int, float)) and not math.isnan(value)
    ok = ok and (value > low or (low_in and value == low))
    ok = ok and (value < high or (high_in and value == high))
    if not ok:
      interval = f"{'[' if low_in else '('}{low}, {high}{']' if high_in else ')'}"
      raise ValueError(f"{where}.{key}={value!r}: expected a number in {interval}.")


def make_optimizer(optim, *, total_steps: int, warmup_steps: int):
  """Linear warmup then cosine decay, under AdamW (default) or SGD with momentum.

  Returns `(tx, schedule)`, `schedule` the base learning rate. `optim.name='sgd'`
  takes `momentum` (default 0.9) and `nesterov`. Weight decay skips biases and
  norm scales: AdamW's is decoupled; SGD adds `weight_decay * param` to the
  gradient (as torch's SGD). `optim.groups`: see the module docstring.
  """
  name = optim.get("name", "adamw")
  if name not in OPTIMIZERS:
    raise ValueError(f"config.optim.name={name!r} is not supported; use one of {OPTIMIZERS}.")
  if warmup_steps > total_steps:
    raise ValueError(
      f"config.optim.warmup_steps: the warmup ({warmup_steps} steps) is longer than "
      f"training (config.total_steps: {total_steps} steps)."
    )
  check_settings(optim, "config.optim")
  min_ratio = optim.get("min_lr_ratio", 0.0)
  schedule = _schedule(optim.lr, total_steps, warmup_steps, min_ratio)
  clip = [clipping.clip_by_global_norm(optim.grad_clip_norm)] if optim.get("grad_clip_norm") else []
  groups = parse_groups(optim)
  if not groups:
    return optax.chain(
      *clip, *_update_rule(optim, schedule, optim.get("weight_decay", 0.0))
    ), schedule

  rules = {
    DEFAULT_GROUP: optax.chain(*_update_rule(optim, schedule, optim.get("weight_decay", 0.0))),
    FROZEN: optax.set_to_zero(),
  }
  for label, _, s in groups:
    if label == FROZEN:
      continue
    check_settings(s, f"config.optim.groups[{label!r}]")
    lr = s.get("lr", optim.lr * s.get("lr_mult", 1.0))
    start = _unfreeze_step(s, total_steps, f"config.optim.groups[{label!r}]")
    own = _schedule(
      lr,
      total_steps - start,
      min(s.get("warmup_steps", warmup_steps), total_steps - start),
      s.get("min_lr_ratio", min_ratio),
      s.get("schedule", "cosine"),
    )
    if start:
      own = _delayed(own, start)
    rules[label] = optax.chain(
      *_update_rule(optim, own, s.get("weight_decay", optim.get("weight_decay", 0.0)))
    )
  labels = lambda params: group_labels(optim, params)
  # Frozen gradients are zeroed before clipping, so they don't count in the global norm.
  freeze = optax.multi_transform(
    {FROZEN: optax.set_to_zero(), DEFAULT_GROUP: optax.identity()},
    lambda p: jax.tree_util.tree_map(lambda l: FROZEN if l == FROZEN else DEFAULT_GROUP, labels(p)),
  )
  return optax.chain(freeze, *clip, optax.multi_transform(rules, labels)), schedule


def _unfreeze_step(settings, total_steps: int, where: str) -> int:
  start = settings.get("unfreeze_at", 0)
  if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start < total_steps:
    raise ValueError(
      f"{where}.unfreeze_at={start!r}: expected a step in [0, {total_steps}) (config.total_steps)."
    )
  return start


def _delayed(schedule: optax.Schedule, start: int) -> optax.Schedule:
  """0 before `start`, then `schedule` counted from `start` (a zero learning
  rate leaves AdamW's and SGD's parameters exactly as they are)."""
  return lambda step: jnp.where(step < start, 0.0, schedule(jnp.maximum(step - start, 0)))


def frozen_mask(optim, params) -> Any:
  """bool tree: True on parameters of a frozen group."""
  return jax.tree_util.tree_map(lambda l: l == FROZEN, group_labels(optim, params))


def describe_groups(counts: Mapping[str, int]) -> str:
  return ", ".join(f"{k}: {v} arrays" for k, v in counts.items())
