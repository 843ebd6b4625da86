"""The objective contract, the registry, weighted sums of terms and weight schedules.

An objective is built once from its config entry and a `BuildContext`, and is
then a pure function of arrays:

  objective(outputs, batch, step) -> (scalar loss, {metric name: scalar})

`outputs` is the model's output dict, `batch` the global batch, `step` the
int32 scalar train step (for objectives that change over training). Before
anything is compiled, `check(output_keys, batch_keys)` raises a ValueError
naming whatever the objective needs and the model or the data lack.

`config.objectives` holds weighted terms, looked up by `type`:

  c.objectives = dict(
      contrastive=dict(type="clip", weight=1.0),
      caption=dict(type="my_caption_loss", weight=dict(schedule="linear",
                   init_value=0.0, end_value=0.5, transition_steps=1000)),
  )

The loss is the weighted sum; each term's metrics are prefixed with its name
(`contrastive/loss`, `contrastive/accuracy/image_text`, ...).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable, Mapping

import jax
import jax.numpy as jnp
import optax

from cmjax.registry import Registry


def _import_builtin_objectives() -> None:
  # Importing a module runs its @register; lazy to keep this module free of cycles.
  from cmjax.objectives import (  # noqa: F401
    alignment,
    captioning,
    classification,
    contrastive,
    ctc,
    matching,
    reconstruction,
  )


OBJECTIVES = Registry(
  "objective", config_key="config.objectives.<term>.type", load_builtins=_import_builtin_objectives
)
register = OBJECTIVES.register


@dataclasses.dataclass
class BuildContext:
  """What an objective may read while it is built (never while it runs).

  Attributes:
    config: the whole experiment config.
    dataset: the `cmjax.data.datasets.Dataset` of `config.data` (its `spec`, its
      sources, e.g. for class frequencies of the train split).
    mesh: the device mesh, or None (objectives that need collectives check it).
  """

  config: Any
  dataset: Any
  mesh: Any = None


class Objective:
  """Base class: set `needs_outputs` / `needs_batch`, implement `__call__`.

  `entry` is the term's config entry (`config.objectives.<term>`); read its
  options in `__init__` and raise ValueError naming `<where>.<key>` on bad ones.
  """

  needs_outputs: tuple[str, ...] = ()
  needs_batch: tuple[str, ...] = ()

  def __init__(self, entry: Mapping[str, Any], ctx: BuildContext, where: str = ""):
    self.entry = entry
    self.where = where or "config.objectives.<term>"

  def check(self, output_keys: Iterable[str], batch_keys: Iterable[str]) -> None:
    """Raises ValueError naming the model outputs and batch keys this objective lacks."""
    require(self.where, "model outputs", self.needs_outputs, output_keys)
    require(self.where, "batch keys", self.needs_batch, batch_keys)

  def __call__(self, outputs: dict, batch: dict, step: jax.Array) -> tuple[jax.Array, dict]:
    raise NotImplementedError


def check_keys(where: str, entry: Mapping[str, Any], allowed: Iterable[str]) -> None:
  """Raises ValueError naming the keys of a config entry that are not `allowed`
  ('type' and 'weight' always are)."""
  allowed = ("type", "weight", *allowed)
  unknown = sorted(set(entry) - set(allowed))
  if unknown:
    raise ValueError(f"{where} has unknown keys {unknown}; it takes {', '.join(allowed)}.")


def require(where: str, what: str, needed: Iterable[str], have: Iterable[str]) -> None:
  have = set(have)
  missing = [k for k in needed if k not in have]
  if missing:
    raise ValueError(
      f"{where} needs {what} {missing}, which the experiment does not "
      f"provide; it has {sorted(have)}."
    )


# ----------------------------------------------------------------------------
# Weights
# ----------------------------------------------------------------------------

SCHEDULES: dict[str, Callable[..., optax.Schedule]] = {
  "constant": optax.constant_schedule,
  "linear": optax.linear_schedule,
  "cosine": optax.cosine_decay_schedule,
  "warmup_cosine": optax.warmup_cosine_decay_schedule,
  "exponential": optax.exponential_decay,
}


def make_weight(weight: Any, where: str) -> float | optax.Schedule:
  """A constant (a number) or a schedule over steps (`dict(schedule=NAME, **kwargs)`,
  NAME one of `SCHEDULES`, kwargs those of the optax schedule of that name)."""
  if isinstance(weight, (int, float)) and not isinstance(weight, bool):
    return float(weight)
  if hasattr(weight, "to_dict"):  # a ConfigDict
    weight = weight.to_dict()
  if isinstance(weight, Mapping):
    kwargs = dict(weight)
    name = kwargs.pop("schedule", None)
    if name not in SCHEDULES:
      raise ValueError(f"{where}.weight.schedule={name!r}; expected one of {sorted(SCHEDULES)}")
    try:
      return SCHEDULES[name](**kwargs)
    except TypeError as e:
      raise ValueError(f"{where}.weight: bad arguments for schedule {name!r}: {e}") from None
  raise ValueError(f"{where}.weight={weight!r}; expected a number or dict(schedule=NAME, ...)")


class WeightedSum:
  """`Σ_term weight_term(step) · term(outputs, batch, step)`, metrics prefixed per term.

  Terms run in the order of their names, so the sum is the same however the
  config was written.
  """

  def __init__(self, terms: Mapping[str, tuple[Objective, float | optax.Schedule]]):
    if not terms:
      raise ValueError("config.objectives is empty: name at least one objective.")
    self.terms = dict(sorted(terms.items()))

  def check(self, output_keys, batch_keys) -> None:
    for objective, _ in self.terms.values():
      objective.check(output_keys, batch_keys)

  def __call__(self, outputs: dict, batch: dict, step: jax.Array) -> tuple[jax.Array, dict]:
    total, metrics = None, {}
    for name, (objective, weight) in self.terms.items():
      loss, term_metrics = objective(outputs, batch, step)
      metrics.update({f"{name}/{k}": v for k, v in term_metrics.items()})
      metrics[f"{name}/loss"] = loss
      if callable(weight):
        w = jnp.asarray(weight(step), jnp.float32)
        metrics[f"{name}/weight"] = w
        loss = w * loss
      elif weight != 1.0:  # a weight of 1 adds the term exactly as it is
        loss = weight * loss
      total = loss if total is None else total + loss
    metrics["loss"] = total
    return total, metrics


def build(config, dataset, mesh=None) -> WeightedSum:
  """The objective of `config.objectives` (every term built and weighted)."""
  entries = config.get("objectives")
  if not entries:
    raise ValueError(
      "config.objectives is missing: name the loss terms, e.g. "
      "config.objectives = dict(contrastive=dict(type='clip'))."
    )
  ctx = BuildContext(config=config, dataset=dataset, mesh=mesh)
  terms = {}
  for name, entry in entries.items():
    where = f"config.objectives.{name}"
    if "type" not in entry:
      raise ValueError(f"{where} needs a 'type' (one of {OBJECTIVES.names()}).")
    cls = OBJECTIVES.get(entry["type"], f"{where}.type")
    terms[name] = (cls(entry, ctx, where), make_weight(entry.get("weight", 1.0), where))
  return WeightedSum(terms)
