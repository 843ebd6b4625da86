"""An experiment built from its config, and checked before anything is compiled.

`build(config, mesh)` looks every part up by name: the dataset
(`config.data.name`), the model (`config.model.name`, given the dataset's
`ElementSpec`), the objective (`config.objectives`), the optimizer
(`config.optim`, with parameter groups) and the train step (`config.step`).
Modules named in `config.imports` are imported first, so a researcher's own
registered parts are found the same way. Nothing here names a dataset, a
modality, a loss or a family of methods.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import math
import os
import sys
from typing import Any

import flax.linen as nn
import jax

from cmjax import config_utils, sharding, train_state
from cmjax import objectives as objectives_lib
from cmjax import optimizer as optimizer_lib
from cmjax import steps as steps_lib
from cmjax.data import datasets
from cmjax.models import encoders, registry


def import_user_modules(config) -> None:
  """Imports every module of `config.imports` (dotted names, or paths of .py files),
  so that what they register is found by name."""
  for name in config.get("imports") or ():
    try:
      if name.endswith(".py"):
        module_name = os.path.splitext(os.path.basename(name))[0]
        spec = importlib.util.spec_from_file_location(module_name, name)
        if spec is None:
          raise ImportError(f"no file {name}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
      else:
        importlib.import_module(name)
    except ImportError as e:
      raise ValueError(
        f"config.imports names {name!r}, which cannot be imported ({e}); "
        "is its folder on PYTHONPATH?"
      ) from e


def build_model(config, spec):
  """The model `config.model` names, told what the data hold (`data=spec`) and the
  compute dtype (`config.dtype`), where its class takes them."""
  cls = registry.MODELS.get(config.model.name)
  kwargs = config.model.to_dict() if hasattr(config.model, "to_dict") else dict(config.model)
  kwargs.pop("name")
  fields = getattr(cls, "__dataclass_fields__", {})
  if "data" in fields:
    kwargs["data"] = spec
  if "dtype" in fields:
    kwargs["dtype"] = config.get("dtype", "float32")
  return cls(**kwargs)


def _check_required_keys(config) -> None:
  if "loss" in config and "objectives" not in config:
    raise ValueError(
      "config.loss was replaced by config.objectives: e.g. "
      "config.objectives = dict(contrastive=dict(type='clip')) "
      "(see README, 'Adding a method')."
    )
  for key in ("batch_size", "data", "model", "objectives", "optim"):
    if key not in config:
      raise ValueError(f"config.{key} is missing.")


def validate_config(config, num_devices: int | None = None) -> None:
  """Stops early, naming the key, on values that cannot work (no data is read)."""
  import_user_modules(config)
  _check_required_keys(config)
  if config.batch_size <= 0:
    raise ValueError(f"config.batch_size must be positive, got {config.batch_size}.")
  mesh = sharding.make_mesh(config.mesh) if num_devices is None else None
  shards = sharding.num_batch_shards(mesh) if mesh is not None else num_devices
  if config.batch_size % shards:
    raise ValueError(
      f"config.batch_size={config.batch_size} is not divisible by the "
      f"{shards} devices of the data axes of config.mesh."
    )
  registry.MODELS.get(config.model.name)
  steps_lib.STEPS.get(config.get("step", "standard"))
  for name, entry in config.objectives.items():
    objectives_lib.OBJECTIVES.get(entry.get("type"), f"config.objectives.{name}.type")
  optimizer_lib.parse_groups(config.optim)
  spec = datasets.build(config.data).spec
  modalities = config.model.get("modalities") or spec.modalities
  for m in modalities:
    if m not in spec.modalities:
      raise ValueError(
        f"config.model.modalities has {m!r}, but the batches of dataset "
        f"{spec.dataset!r} hold only {list(spec.modalities)} (see config.data)."
      )
    entry = config.model.get(m) or {}
    encoders.get_encoder_cls(m, entry.get("name", encoders.DEFAULT_ENCODER[m]))
  check_sizes(config.model, "config.model")
  check_sizes(config.data, "config.data")
  image = config.model.get("image") or {}
  patch = image.get("patch_size") if image.get("name", "vit") == "vit" else None
  if "image" in modalities and patch and spec.features["image"].shape[0] % patch:
    raise ValueError(
      f"config.data.image_size={spec.features['image'].shape[0]} is not "
      f"divisible by config.model.image.patch_size={patch}."
    )
  _check_intervals(config)


# Integer sizes that must be at least 1 (0 or less would reach a layer as an
# empty or negative-sized array), and counts that may be 0.
_POSITIVE_SIZES = frozenset(
  "width mlp_dim num_heads head_dim embed_dim patch_size patch_time patch_freq "
  "tubelet_frames n_fft hop_length n_mels n_mfcc features kernel_size stride stem_stride "
  "rank rank_dim tensor_dim num_bottlenecks num_groups max_len "
  "image_size max_text_len sample_rate video_frames video_size vocab_size".split()
)
_COUNTS = frozenset("depth num_time_masks num_freq_masks fusion_layer".split())


def check_sizes(node, path: str) -> None:
  """Raises naming the key for a size below 1 (or a count below 0), a float that
  is NaN or infinite, or a width its number of heads does not divide."""
  for key, value in node.items():
    where = f"{path}.{key}"
    if hasattr(value, "items"):
      check_sizes(value, where)
    elif isinstance(value, bool):
      continue
    elif isinstance(value, int) and key in _POSITIVE_SIZES and value < 1:
      raise ValueError(f"{where}={value}: expected a positive integer.")
    elif isinstance(value, int) and key in _COUNTS and value < 0:
      raise ValueError(f"{where}={value}: expected an integer >= 0.")
    elif isinstance(value, float) and not math.isfinite(value):
      raise ValueError(f"{where}={value}: expected a finite number.")
  width, heads = node.get("width"), node.get("num_heads")
  if isinstance(width, int) and isinstance(heads, int) and not node.get("head_dim"):
    if width % heads:
      raise ValueError(
        f"{path}.width={width} is not divisible by {path}.num_heads={heads} "
        f"(or set {path}.head_dim)."
      )


def _check_intervals(config) -> None:
  steps_per_call = config.get("steps_per_call", 1)
  if not isinstance(steps_per_call, int) or steps_per_call < 1:
    raise ValueError(
      f"config.steps_per_call={steps_per_call!r}: expected a positive "
      "integer (train steps per compiled call; 1 = one step per call)."
    )
  for name in ("log_every_steps", "checkpoint_every_steps"):
    if config[name] <= 0:
      raise ValueError(f"config.{name} must be positive, got {config[name]}.")


@dataclasses.dataclass
class Experiment:
  """Every part of a run, built and checked; the loop only drives it."""

  config: Any
  mesh: Any
  rules: tuple
  dataset: Any
  spec: Any
  model: Any
  objective: Any
  tx: Any
  schedule: Any
  step: Any  # the train-step builder of config.step
  total_steps: int
  train_source: Any

  def batch_spec(self, local: bool = True) -> dict[str, jax.ShapeDtypeStruct]:
    """Shapes and dtypes of a batch: this process's rows (`local`) or the global batch."""
    b = self.config.batch_size // (jax.process_count() if local else 1)
    return self.spec.batch(b)

  def init_state(self):
    """`(abstract_state, state_shardings, init)` on the mesh (see train_state)."""
    return train_state.create_train_state(
      self.model,
      self.tx,
      self.batch_spec(local=False),
      self.mesh,
      self.rules,
      seed=self.config.seed,
      init_extra=self.step.init_extra,
    )

  def jit_step(self, state_shardings):
    return steps_lib.jit_step(self.step, state_shardings, self.mesh)

  def jit_multi_step(self, state_shardings):
    return steps_lib.jit_multi_step(self.step, state_shardings, self.mesh)

  def signature(self, abstract_state) -> dict:
    """What must match for a workdir's checkpoints to be resumed by this experiment."""
    return {
      "model": self.config.model.to_dict(),
      "dtype": self.config.get("dtype", "float32"),
      "params": jax.tree_util.tree_map(lambda a: list(a.shape), abstract_state.params),
    }


def build(
  config,
  mesh=None,
  *,
  total_steps: int | None = None,
  warmup_steps: int | None = None,
  train_source=None,
) -> Experiment:
  """Builds and checks every part of the experiment of `config` on `mesh`.

  `total_steps` / `warmup_steps` default to the config's durations (which may
  need the size of the train split, read from `train_source` or the dataset).
  The objective's needs are checked against the model's outputs and the
  dataset's batch keys here, before anything is compiled.
  """
  validate_config(config)
  mesh = sharding.make_mesh(config.mesh) if mesh is None else mesh
  rules = sharding.logical_rules(config.get("sharding_rules", []))
  dataset = datasets.build(config.data)
  spec = dataset.spec
  if total_steps is None or warmup_steps is None:
    train_source = train_source or dataset.source("train", seed=config.seed)
    n = len(train_source)
    bs = config.batch_size
    if total_steps is None:
      total_steps = config_utils.resolve_steps(config, "total", batch_size=bs, num_train_examples=n)
    if warmup_steps is None:
      warmup_steps = config_utils.resolve_steps(
        config.optim, "warmup", batch_size=bs, num_train_examples=n, default=0
      )
  model = build_model(config, spec)
  objective = objectives_lib.build(config, dataset, mesh)
  tx, schedule = optimizer_lib.make_optimizer(
    config.optim, total_steps=total_steps, warmup_steps=warmup_steps
  )
  step = steps_lib.build_step(config, model, objective, tx, schedule)
  exp = Experiment(
    config,
    mesh,
    rules,
    dataset,
    spec,
    model,
    objective,
    tx,
    schedule,
    step,
    total_steps,
    train_source,
  )
  check_objective(exp)
  return exp


def check_objective(exp: Experiment) -> None:
  """Raises, naming what is missing, when the objective needs model outputs or batch
  keys the experiment does not have; also checks the optimizer's parameter groups."""
  batch = exp.batch_spec(local=False)
  with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules):
    variables = jax.eval_shape(lambda b: exp.model.init(jax.random.key(0), b, train=False), batch)
    outputs = jax.eval_shape(lambda v, b: exp.model.apply(v, b, train=False), variables, batch)
  exp.objective.check(set(outputs), set(batch))
  if exp.config.optim.get("groups"):
    optimizer_lib.check_groups(exp.config.optim, sharding.unbox(variables["params"]))
