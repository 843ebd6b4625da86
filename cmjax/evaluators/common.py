"""The evaluator contract, the registry, and batched, jitted encoding.

An evaluator is a class registered by `type` and built once per run from its
config entry (`config.evals.<name>`) and an `EvalContext`:

  @register("my_eval")
  class MyEvaluator:
    def __init__(self, entry, ctx: EvalContext):
      self.every_steps = every(entry, 0)     # 0: only at the end of training
      ...                                    # held-out data, jitted predict functions
    def run(self, variables):                # {'params': ..., **model state}
      yield "my_eval/accuracy", 0.93         # (metric name, float) pairs
    def artifacts(self) -> dict: ...         # optional: JSON written to <workdir>/<name>.json
    def pictures(self) -> dict: ...          # optional: {name: uint8 [H, W, 3]} after each run,
                                             # to TensorBoard and <workdir>/<eval name>_<name>.png

Evaluators read the dataset (its `spec`, held-out `source`s, `preprocess`,
`tokenizer`) and call the model's methods (`encode_<modality>`, `apply`); they
never import the trainer.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from cmjax.registry import Registry


def _import_builtin_evaluators() -> None:
  # Importing a module runs its @register; lazy, as the modules import this one.
  from cmjax.evaluators import (  # noqa: F401
    asr,
    captioning,
    classification,
    compositionality,
    nearest_caption,
    probes,
    reconstruction,
    relation_maps,
    retrieval,
    zeroshot,
  )


EVALUATORS = Registry(
  "evaluator type", config_key="config.evals.<name>.type", load_builtins=_import_builtin_evaluators
)
register = EVALUATORS.register


@dataclasses.dataclass
class EvalContext:
  """What an evaluator is built from besides its config entry.

  Attributes:
    config: the experiment config.
    dataset: the `cmjax.data.datasets.Dataset` of `config.data`.
    model: the flax module (unbound; `run` gets the variables).
  """

  config: Any
  dataset: Any
  model: Any

  @property
  def modalities(self) -> tuple[str, ...]:
    """The modalities the model consumes."""
    from cmjax.models.registry import input_modalities  # pylint: disable=g-import-not-at-top

    return input_modalities(self.model)


def get_evaluator_cls(name: str, config_key: str = "config.evals.<name>.type") -> type:
  return EVALUATORS.get(name, config_key)


def split_seed(entry) -> int:
  """Seed of the evaluated split: `entry.seed`, else 0 whatever `config.seed` is,
  so runs that differ only in their seed are scored on the same examples."""
  return int(entry.get("seed", 0))


class Encoder:
  """Embeds one modality in fixed-size batches with one compiled function.

  The last partial batch is zero-padded to `batch_size`, so evaluation never
  triggers a second compilation.
  """

  def __init__(self, model, method: str, batch_size: int):
    self.batch_size = batch_size
    fn = getattr(model, method)
    self._apply = jax.jit(lambda variables, *xs: model.apply(variables, *xs, method=fn))

  def __call__(self, variables: Any, *arrays: np.ndarray) -> np.ndarray:
    """`variables`: `{'params': ..., ...}` as `model.apply` takes them (e.g.
    `TrainState.variables()`); `arrays` share a leading axis `[n, ...]`.

    Returns `[n, embed_dim]` float32.
    """
    n = arrays[0].shape[0]
    out = []
    for start in range(0, n, self.batch_size):
      chunk = [a[start : start + self.batch_size] for a in arrays]
      rows = chunk[0].shape[0]
      if rows < self.batch_size:
        chunk = [
          np.concatenate([c, np.zeros((self.batch_size - rows,) + c.shape[1:], c.dtype)])
          for c in chunk
        ]
      out.append(np.asarray(self._apply(variables, *chunk))[:rows])
    return np.concatenate(out).astype(np.float32)


def tokenize_all(tokenizer, texts, max_len: int) -> tuple[np.ndarray, np.ndarray]:
  """List of strings -> (`[n, max_len]` int32 ids, `[n, max_len]` bool mask)."""
  pairs = [tokenizer.pad(t, max_len) for t in texts]
  return (
    np.stack([p[0] for p in pairs]).astype(np.int32),
    np.stack([p[1] for p in pairs]).astype(bool),
  )


def every(config_entry, default: int) -> int:
  return int(config_entry.get("every_steps", default) or 0)
