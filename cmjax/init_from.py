"""Starting a run from another run's parameters: `config.init_from`.

  config.init_from = dict(
    path="/runs/contrastive",   # a workdir, its checkpoints/ folder, or one step folder
    step=None,                  # default: the newest step whose checksums verify
    rules=[                     # (regex on a saved name, its name in this model)
      (r"image_encoder/(.*)", r"image_encoder/\\1"),
    ],
    strict=False,               # True: every parameter of both sides must be matched
    resize_positions=r"(.*/)?(image|video)_encoder/pos_embedding",
  )

Names are parameter paths joined by '/' (`text_encoder/token_embed/embedding`).
Each saved parameter takes the first rule whose regex matches its whole name
and is loaded under the name the rule's replacement makes; without `rules`
every name maps to itself. The loaded values replace the fresh initial ones
before the optimizer state is made, so a run starts exactly from them. A
rule that matches nothing, a name this model lacks, or a shape that differs
stops the run with one message naming the parameter (and both shapes);
`strict` also stops on parameters left at their initial values or saved ones
left unused, which are otherwise listed in the log. Applied only when a run
starts; a resumed run restores its own checkpoint.

A ViT position table whose name matches `resize_positions` (a regex on this
model's names; '' for none) and whose grid differs from the saved one (another
image size) is resized bicubically (`cmjax.pretrained.positions`), its class
token row kept.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from typing import Any, Mapping

import jax
import numpy as np

from cmjax import checkpoint_integrity as integrity
from cmjax import train_state

KEYS = ("path", "step", "rules", "strict", "resize_positions")
RESIZE_POSITIONS = r"(.*/)?(image|video)_encoder/pos_embedding"


def step_dir(path: str, step: int | None = None) -> str:
  """The step folder `path` names (a workdir, its checkpoints/, or a step itself);
  the newest whose checksums verify unless `step` is given."""
  path = os.path.abspath(os.path.expanduser(path))
  if os.path.isdir(os.path.join(path, "state")):  # one step, or a converted folder
    manifest = integrity.read_manifest(path)
    problems = integrity.check_files(path, manifest) if manifest else []
    if problems:
      raise ValueError(f"config.init_from.path={path!r} does not verify: {'; '.join(problems[:3])}")
    return path
  folder = (
    os.path.join(path, "checkpoints") if os.path.isdir(os.path.join(path, "checkpoints")) else path
  )
  if not os.path.isdir(folder):
    raise ValueError(f"config.init_from.path={path!r}: no such folder.")
  steps = sorted((int(n) for n in os.listdir(folder) if n.isdigit()), reverse=True)
  if step is not None:
    if step not in steps:
      raise ValueError(f"config.init_from.step={step}: {folder} holds steps {sorted(steps)}.")
    return os.path.join(folder, str(step))
  for s in steps:
    candidate = os.path.join(folder, str(s))
    try:
      manifest = integrity.read_manifest(candidate)
    except ValueError:
      continue
    if manifest is None or integrity.non_finite(manifest["arrays"]):
      continue
    if not integrity.check_files(candidate, manifest):
      return candidate
  raise ValueError(
    f"config.init_from.path={path!r}: no checkpoint there verifies (steps {sorted(steps)}); "
    "`python -m cmjax.checkpoint verify` says why."
  )


def saved_params(folder: str) -> dict[str, np.ndarray]:
  """`{name: array}` of the parameters saved in a step folder."""
  from cmjax import checkpoint  # pylint: disable=g-import-not-at-top

  state = checkpoint.read_on_host(folder)
  params = state["params"] if isinstance(state, Mapping) and "params" in state else state
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  return {train_state.param_name(p): np.asarray(x) for p, x in flat}


def nested(flat: Mapping[str, Any]) -> dict:
  """`{'a/b/c': x}` -> `{'a': {'b': {'c': x}}}`: a parameter tree `model.apply` takes."""
  tree: dict = {}
  for name, value in flat.items():
    node = tree
    *parents, leaf = name.split("/")
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  return tree


def _resizable(want: tuple, got: tuple) -> bool:
  from cmjax.pretrained import positions  # pylint: disable=g-import-not-at-top

  if len(want) != 2 or len(got) != 2 or want[1] != got[1]:
    return False
  return any(positions.grid_side(want[0], p) and positions.grid_side(got[0], p) for p in (0, 1))


def match(
  saved: Mapping[str, Any], targets: Mapping[str, Any], rules, resize_positions: str = ""
) -> tuple[dict, list[str]]:
  """`({target name: saved name}, saved names left unused)`; raises naming a
  rule that matches nothing, a target this model lacks or a shape that differs.

  Args:
    saved: saved name -> array (or anything with `.shape`).
    targets: this model's parameter name -> array or `ShapeDtypeStruct`.
    rules: `[(regex, replacement), ...]`, or None for names as they are.
    resize_positions: regex on target names whose position grids may differ
      (then resized by `load`); '' for none.
  """
  try:
    resize = re.compile(resize_positions) if resize_positions else None
  except re.error as e:
    raise ValueError(f"config.init_from.resize_positions: bad regex: {e}") from None
  rules = [(r"(.*)", r"\1")] if not rules else list(rules)
  compiled = []
  for i, rule in enumerate(rules):
    if not (isinstance(rule, (tuple, list)) and len(rule) == 2):
      raise ValueError(f"config.init_from.rules[{i}]={rule!r}: expected (regex, replacement).")
    try:
      compiled.append((re.compile(rule[0]), rule[1], i))
    except re.error as e:
      raise ValueError(f"config.init_from.rules[{i}]: bad regex {rule[0]!r}: {e}") from None
  mapping, unused, used_rules = {}, [], set()
  for name in saved:
    for pattern, replacement, i in compiled:
      m = pattern.fullmatch(name)
      if m:
        used_rules.add(i)
        target = m.expand(replacement)
        if target not in targets:
          close = difflib.get_close_matches(target, list(targets), n=3)
          raise ValueError(
            f"config.init_from.rules[{i}] maps saved parameter {name!r} to {target!r}, which "
            f"this model does not have (close: {close})."
          )
        if target in mapping:
          raise ValueError(
            f"config.init_from: {target!r} would be loaded from both {mapping[target]!r} and "
            f"{name!r}; make the rules tell them apart."
          )
        want, got = tuple(targets[target].shape), tuple(saved[name].shape)
        if want != got and not (resize and resize.fullmatch(target) and _resizable(want, got)):
          raise ValueError(
            f"config.init_from: parameter {target!r} has shape {want} in this model, but the "
            f"saved {name!r} has shape {got}."
          )
        mapping[target] = name
        break
    else:
      unused.append(name)
  for pattern, _, i in compiled:
    if i not in used_rules:
      close = difflib.get_close_matches(pattern.pattern, list(saved), n=3)
      raise ValueError(
        f"config.init_from.rules[{i}]: {pattern.pattern!r} matches no saved parameter "
        f"(there are {len(saved)}, e.g. {close or list(saved)[:3]})."
      )
  return mapping, unused


def load(spec: Mapping, abstract_params) -> dict[str, jax.Array]:
  """`{name: array}` to pass to the train state's `init`, placed with the
  shardings of `abstract_params` (the abstract state's `params`)."""
  unknown = sorted(set(spec) - set(KEYS))
  if unknown or not spec.get("path"):
    raise ValueError(f"config.init_from needs `path` and takes {list(KEYS)}; got {sorted(spec)}.")
  folder = step_dir(spec["path"], spec.get("step"))
  saved = saved_params(folder)
  flat = jax.tree_util.tree_flatten_with_path(abstract_params)[0]
  targets = {train_state.param_name(p): a for p, a in flat}
  resize = spec.get("resize_positions", RESIZE_POSITIONS)
  mapping, unused = match(saved, targets, spec.get("rules"), resize)
  left = sorted(set(targets) - set(mapping))
  if spec.get("strict") and (left or unused):
    raise ValueError(
      f"config.init_from.strict: {len(left)} parameters of this model are not loaded "
      f"({left[:5]}) and {len(unused)} saved ones are unused ({unused[:5]})."
    )
  logging.warning(
    "init_from %s: loaded %d of the model's %d parameters; %d left at their initial values "
    "(%s); %d saved ones unused (%s).",
    folder,
    len(mapping),
    len(targets),
    len(left),
    ", ".join(left[:5]),
    len(unused),
    ", ".join(unused[:5]),
  )
  out = {}
  for target, name in mapping.items():
    value = saved[name]
    if tuple(value.shape) != tuple(targets[target].shape):
      from cmjax.pretrained import positions  # pylint: disable=g-import-not-at-top

      logging.warning(
        "init_from: %s resized from %s to %s (another image size).",
        target,
        value.shape,
        targets[target].shape,
      )
      value = positions.resize(value, targets[target].shape[0])
    value = value.astype(targets[target].dtype)
    sharding = targets[target].sharding
    out[target] = jax.make_array_from_callback(value.shape, sharding, lambda idx, v=value: v[idx])
  return out
