"""The train state, the jitted train step, and the loop `train_and_evaluate`.

The step is one pure function `(state, batch) -> (state, metrics)`, compiled once
with explicit shardings over the config's mesh and with the state's buffers
donated. Side effects (data, logging, checkpoints, evaluation) live in the loop.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import time
from typing import Any, Mapping

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.experimental import multihost_utils
from jax.sharding import PartitionSpec as P

from cmjax import checkpoint as ckpt_lib
from cmjax import clipping
from cmjax import config_utils
from cmjax import grad_accum
from cmjax import losses
from cmjax import metric_writer
from cmjax import multi_step
from cmjax import sharding
from cmjax.data import balance
from cmjax.data import pipeline
from cmjax.models import encoders
from cmjax.models import registry


@flax.struct.dataclass
class TrainState:
  """Everything a step updates.

  `model_state` holds the model's non-parameter collections (BatchNorm's
  `batch_stats`), `{}` for models without any.
  """
  step: jax.Array
  params: Any
  opt_state: Any
  model_state: Any

  def variables(self) -> dict:
    """The `model.apply` variables: `{'params': ..., **model_state}`."""
    return {"params": self.params, **self.model_state}


# ----------------------------------------------------------------------------
# Model, optimiser, batch spec
# ----------------------------------------------------------------------------

def model_modalities(config) -> tuple[str, ...]:
  """`config.model.modalities`, else image + text (+ audio with speech data)."""
  if config.model.get("modalities"):
    return tuple(config.model.modalities)
  present = ["image"] + ["text"] * pipeline.has_text(config.data)
  return tuple(present + ["audio"] * bool(config.data.speech))


def model_kwargs(config) -> dict:
  """Keyword arguments of the model, completed from the data config."""
  kw = config.model.to_dict()
  kw.pop("name")
  text = dict(kw.get("text", {}))
  text["vocab_size"] = pipeline.make_tokenizer(config.data).vocab_size
  text_cls = encoders.get_encoder_cls(
      "text", text.get("name", encoders.DEFAULT_ENCODER["text"]))
  if "max_len" in getattr(text_cls, "__dataclass_fields__", {}):
    text["max_len"] = config.data.get("max_text_len", 32)
  kw["text"] = text
  kw["audio"] = dict(kw.get("audio", {}), sample_rate=config.data.sample_rate)
  kw["modalities"] = model_modalities(config)
  kw["dtype"] = config.get("dtype", "float32")
  return kw


def build_model(config):
  return registry.get_model(config.model.name, **model_kwargs(config))


def _decay_mask(params):
  """Weight decay on matrices only: not on biases, norms, temperature or bias scalars."""
  return jax.tree_util.tree_map(lambda p: jnp.ndim(p) >= 2, params)


OPTIMIZERS = ("adamw", "sgd")


def make_optimizer(optim, *, total_steps: int, warmup_steps: int):
  """Linear warmup then cosine decay, under AdamW (default) or SGD with momentum.

  Returns `(tx, schedule)`. `optim.name='sgd'` takes `momentum` (default 0.9)
  and `nesterov`. Weight decay skips biases and norm scales: AdamW's is
  decoupled; SGD adds `weight_decay * param` to the gradient (as torch's SGD).
  """
  name = optim.get("name", "adamw")
  if name not in OPTIMIZERS:
    raise ValueError(f"config.optim.name={name!r} is not supported; use one of {OPTIMIZERS}.")
  if warmup_steps > total_steps:
    raise ValueError(f"warmup ({warmup_steps} steps) is longer than training "
                     f"({total_steps} steps).")
  schedule = optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=optim.lr, warmup_steps=warmup_steps,
      decay_steps=max(total_steps, 1), end_value=optim.lr * optim.get("min_lr_ratio", 0.0))
  parts = []
  if optim.get("grad_clip_norm"):
    parts.append(clipping.clip_by_global_norm(optim.grad_clip_norm))
  if name == "adamw":
    parts.append(optax.adamw(schedule, b1=optim.get("b1", 0.9), b2=optim.get("b2", 0.999),
                             weight_decay=optim.get("weight_decay", 0.0), mask=_decay_mask))
  else:
    if optim.get("weight_decay"):
      parts.append(optax.add_decayed_weights(optim.weight_decay, mask=_decay_mask))
    parts.append(optax.sgd(schedule, momentum=optim.get("momentum", 0.9),
                           nesterov=optim.get("nesterov", False)))
  return optax.chain(*parts), schedule


def batch_spec(config, local: bool = True) -> dict[str, jax.ShapeDtypeStruct]:
  """Shapes and dtypes of a training batch, as the pipeline produces it."""
  data = config.data
  b = config.batch_size // (jax.process_count() if local else 1)
  s = data.image_size
  spec = {"image": ((b, s, s, 3), np.uint8)}
  if pipeline.has_text(data):
    spec.update(text=((b, data.max_text_len), np.int32),
                text_mask=((b, data.max_text_len), bool))
  if data.speech:
    t = pipeline.max_audio_samples(data)
    spec.update(audio=((b, t), np.float32), audio_mask=((b, t), bool))
  if pipeline.has_video(data):
    v = data.get("video_size", 32)
    spec["video"] = ((b, data.video_frames, v, v, 3), np.uint8)
  for key in pipeline.label_keys(data):
    spec[key] = ((b,), np.int32)
  return {k: jax.ShapeDtypeStruct(shape, dtype) for k, (shape, dtype) in spec.items()}


def check_batch(batch: Mapping[str, Any], spec: Mapping[str, jax.ShapeDtypeStruct]) -> None:
  """Raises ValueError naming the key when a batch differs from what the model expects."""
  missing = [k for k in spec if k not in batch]
  if missing:
    raise ValueError(f"Batch is missing key(s) {missing}; it has {sorted(batch)}.")
  for key, want in spec.items():
    got = batch[key]
    if tuple(got.shape) != tuple(want.shape):
      raise ValueError(f"Batch key {key!r} has shape {tuple(got.shape)}, expected "
                       f"{tuple(want.shape)}.")
    if np.dtype(got.dtype) != np.dtype(want.dtype):
      raise ValueError(f"Batch key {key!r} has dtype {got.dtype}, expected {want.dtype}.")


# ----------------------------------------------------------------------------
# State creation and the train step
# ----------------------------------------------------------------------------

def create_train_state(model, tx, config, mesh, rules):
  """Returns `(abstract_state, state_shardings, init)`; `init()` builds the state sharded.

  The state is never materialised on one device first: its shapes come from
  `jax.eval_shape`, its shardings from the parameters' logical axis names, and
  the jitted initialiser writes every array straight into its shards.
  """
  spec = batch_spec(config, local=False)
  dummy = {k: jnp.zeros(v.shape, v.dtype) for k, v in spec.items()}

  def init_boxed(rng):
    variables = dict(model.init(rng, dummy, train=False))
    params = variables.pop("params")
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=tx.init(params), model_state=variables)

  abstract_boxed = jax.eval_shape(init_boxed, jax.random.key(0))
  shardings = sharding.tree_shardings(abstract_boxed, mesh, rules)
  abstract = jax.tree_util.tree_map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
      nn.meta.unbox(abstract_boxed), shardings)

  init = jax.jit(lambda rng: nn.meta.unbox(init_boxed(rng)), out_shardings=shardings)
  return abstract, shardings, lambda: init(jax.random.key(config.seed))


def make_train_step(model, tx, schedule, loss_fn, config):
  """The pure train step `(state, batch) -> (state, metrics)`.

  With `config.grad_accum_steps = k > 1` the batch is processed in k
  micro-batches (`config.grad_accum`: 'mean' or 'cached_embeddings'; see
  `cmjax/grad_accum.py` for which losses each reproduces exactly).
  """
  base_rng = jax.random.key(config.seed + 1)
  k = int(config.get("grad_accum_steps", 1))
  method = config.get("grad_accum", "mean")
  if k < 1 or method not in grad_accum.METHODS:
    raise ValueError(f"config.grad_accum_steps={k}, config.grad_accum={method!r}: expected "
                     f"a positive number of steps and one of {grad_accum.METHODS}.")

  def apply_fn(params, model_state, batch, rng):
    variables = {"params": params, **model_state}
    if model_state:
      # BatchNorm: batch statistics in, updated running averages out.
      outputs, new_state = model.apply(variables, batch, train=True, rngs={"dropout": rng},
                                       mutable=list(model_state))
      return outputs, dict(new_state)
    return model.apply(variables, batch, train=True, rngs={"dropout": rng}), {}

  def train_step(state: TrainState, batch):
    rng = jax.random.fold_in(base_rng, state.step)
    args = (apply_fn, loss_fn, state.params, state.model_state, batch, rng)
    if k == 1:
      loss, metrics, model_state, grads = grad_accum.full_batch_grads(*args)
    elif method == "mean":
      loss, metrics, model_state, grads = grad_accum.mean_microbatch_grads(*args, k)
    else:
      loss, metrics, model_state, grads = grad_accum.cached_embedding_grads(*args, k)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(metrics, loss=loss, grad_norm=optax.tree.norm(grads),
                   lr=schedule(state.step))
    return TrainState(step=state.step + 1, params=params, opt_state=opt_state,
                      model_state=dict(model_state)), metrics

  return train_step


CONTRASTIVE_LOSSES = ("clip", "siglip")
LOSS_NAMES = CONTRASTIVE_LOSSES + ("classification",)


def balanced_class_weights(config) -> dict[str, np.ndarray]:
  """{task: `[classes]` weights n / (classes * count)} from the train split's labels."""
  source = pipeline.make_source(config.data, "train", seed=config.seed)
  return {task: balance.balanced_class_weights(balance.labels_of(source, task), classes)
          for task, classes in config.model.heads.items()}


def build_train_step(config, model, tx, schedule, mesh, rules):
  """Returns `(abstract_state, state_shardings, init, step)` for `mesh`.

  `step(state, global_batch) -> (state, metrics)` is the train step jitted
  once with explicit shardings: the state as its logical axes and
  `config.sharding_rules` say, the batch split over `data x fsdp`, metrics
  replicated; the old state's buffers are donated to the new one.
  """
  with mesh, nn.logical_axis_rules(rules):
    abstract, shardings, init = create_train_state(model, tx, config, mesh, rules)
  step = jax.jit(make_train_step(model, tx, schedule, make_loss_fn(config, mesh), config),
                 in_shardings=(shardings, sharding.batch_sharding(mesh)),
                 out_shardings=(shardings, sharding.replicated(mesh)),
                 donate_argnums=(0,))
  return abstract, shardings, init, step


def build_multi_step(config, model, tx, schedule, mesh, state_shardings):
  """The jitted `(state, batches [steps, batch, ...]) -> (state, metrics [steps])`.

  Runs `config.steps_per_call` (or fewer) train steps in one call; see
  `cmjax/multi_step.py` for why. Shardings and donation as `build_train_step`.
  """
  run = multi_step.scan_steps(
      make_train_step(model, tx, schedule, make_loss_fn(config, mesh), config))
  return jax.jit(run, in_shardings=(state_shardings, multi_step.stacked_batch_sharding(mesh)),
                 out_shardings=(state_shardings, sharding.replicated(mesh)),
                 donate_argnums=(0,))


def make_loss_fn(config, mesh=None):
  """`(outputs, batch) -> (loss, metrics)` for `config.loss.name`.

  'clip' / 'siglip': the pairwise contrastive loss summed over modality pairs;
  with `config.loss.sharded` and a `mesh`, computed from per-device blocks
  (`cmjax.sharded_losses`), so no device holds the `[B, B]` logits.
  'classification': cross-entropy summed over the model's heads.
  """
  kind = config.loss.name
  if kind not in LOSS_NAMES:
    raise ValueError(f"config.loss.name={kind!r} is unknown; known: {LOSS_NAMES}.")
  if kind == "classification":
    weights = config.loss.get("class_weights")
    if weights is None:
      return losses.classification_loss
    if weights != "balanced":
      raise ValueError(f"config.loss.class_weights={weights!r}; expected 'balanced' or None.")
    return functools.partial(losses.classification_loss,
                             class_weights=balanced_class_weights(config))
  if config.loss.get("sharded") and mesh is not None:
    return functools.partial(_sharded_contrastive_loss, kind=kind, mesh=mesh)
  contrastive = functools.partial(losses.multimodal_contrastive_loss, kind=kind)
  return lambda outputs, batch: contrastive(outputs)


def _sharded_contrastive_loss(outputs, batch, *, kind, mesh):
  """The contrastive loss in `jax.shard_map`: each device takes its batch rows."""
  del batch
  rows = P(sharding.BATCH_AXES)
  specs = {k: P() if jnp.ndim(v) == 0 else rows for k, v in outputs.items()}
  local = functools.partial(losses.multimodal_contrastive_loss, kind=kind,
                            axis_name=sharding.BATCH_AXES)
  return jax.shard_map(local, mesh=mesh, in_specs=(specs,), out_specs=P())(outputs)


# ----------------------------------------------------------------------------
# Performance accounting
# ----------------------------------------------------------------------------

def compiled_flops(compiled) -> float | None:
  """FLOPs of one call of a compiled function, from XLA's cost analysis."""
  try:
    cost = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except
    return None
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  return float(cost["flops"]) if cost and "flops" in cost else None


def measure_peak_flops(n: int = 1024, repeats: int = 5) -> float:
  """Achieved float32 FLOP/s of one square matmul on device 0 (the MFU denominator)."""
  x = jnp.ones((n, n), jnp.float32)
  f = jax.jit(lambda a: a @ a)
  f(x).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    t = time.perf_counter()
    f(x).block_until_ready()
    best = min(best, time.perf_counter() - t)
  return 2 * n**3 / best


# ----------------------------------------------------------------------------
# Config checks
# ----------------------------------------------------------------------------

def validate_config(config, num_devices: int | None = None) -> None:
  """Stops early, naming the key, on values that cannot work."""
  for key in ("batch_size", "data", "model", "loss", "optim"):
    if key not in config:
      raise ValueError(f"config.{key} is missing.")
  if config.batch_size <= 0:
    raise ValueError(f"config.batch_size must be positive, got {config.batch_size}.")
  mesh = sharding.make_mesh(config.mesh) if num_devices is None else None
  shards = sharding.num_batch_shards(mesh) if mesh is not None else num_devices
  if config.batch_size % shards:
    raise ValueError(f"config.batch_size={config.batch_size} is not divisible by the "
                     f"{shards} devices of the data axes of config.mesh.")
  registry.MODELS.get(config.model.name)  # raises on an unknown model name
  make_loss_fn(config)  # raises on an unknown loss name
  modalities = model_modalities(config)
  if config.loss.name in CONTRASTIVE_LOSSES and len(modalities) < 2:
    raise ValueError(f"config.model.modalities={modalities} needs at least two "
                     "modalities for a contrastive loss.")
  if "audio" in modalities and not config.data.speech:
    raise ValueError("config.model.modalities has 'audio' but config.data.speech is False.")
  if "text" in modalities and not pipeline.has_text(config.data):
    raise ValueError(f"config.model.modalities has 'text' but the dataset "
                     f"{config.data.get('name')!r} has no text.")
  if "video" in modalities and not pipeline.has_video(config.data):
    raise ValueError("config.model.modalities has 'video' but config.data.video_frames "
                     "is 0; set it to the clip length (e.g. 8).")
  pipeline.text_field(config.data)  # raises on a bad text_field
  for m in modalities:
    entry = config.model.get(m) or {}
    encoders.get_encoder_cls(m, entry.get("name", encoders.DEFAULT_ENCODER[m]))
  image = config.model.get("image") or {}
  patch = image.get("patch_size") if image.get("name", "vit") == "vit" else None
  if "image" in modalities and patch and config.data.image_size % patch:
    raise ValueError(f"config.data.image_size={config.data.image_size} is not divisible "
                     f"by config.model.image.patch_size={patch}.")
  steps_per_call = config.get("steps_per_call", 1)
  if not isinstance(steps_per_call, int) or steps_per_call < 1:
    raise ValueError(f"config.steps_per_call={steps_per_call!r}: expected a positive "
                     "integer (train steps per compiled call; 1 = one step per call).")
  for name, value in (("log_every_steps", config.log_every_steps),
                      ("checkpoint_every_steps", config.checkpoint_every_steps)):
    if value <= 0:
      raise ValueError(f"config.{name} must be positive, got {value}.")


def load_trained(config, workdir: str, step: int | None = None):
  """`(model, variables, step)` of the run in `workdir` (newest checkpoint by default).

  `variables` is what `model.apply` takes: `{'params': ...}` plus any state
  such as BatchNorm's `batch_stats`.
  """
  mesh = sharding.make_mesh(config.mesh)
  rules = sharding.logical_rules(config.get("sharding_rules", []))
  model = build_model(config)
  tx, _ = make_optimizer(config.optim, total_steps=1, warmup_steps=0)
  with mesh, nn.logical_axis_rules(rules):
    abstract, _, _ = create_train_state(model, tx, config, mesh, rules)
  checkpointer = ckpt_lib.Checkpointer(workdir, every_steps=1, keep=1)
  try:
    state, step = checkpointer.restore_state(abstract, step)
  finally:
    checkpointer.close()
  return model, state.variables(), step


# ----------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------

class _Preemption:
  """Turns SIGTERM into a flag the loop checks, so it can save before exiting."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread: leave signals alone
      self._previous = None
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def _say(*args, **kwargs) -> None:
  """Progress on stdout, from process 0 only (every process runs the same loop)."""
  if jax.process_index() == 0:
    print(*args, **kwargs)


def host_local(tree: Any) -> Any:
  """The full value of every (possibly multi-process) global array, on this host.

  Evaluators run the model with plain `jax.jit` on each process's own device;
  with several processes the train state's arrays span devices of other
  processes, so they are gathered first (every process gets the same copy).
  """
  if jax.process_count() == 1:
    return tree
  return multihost_utils.process_allgather(tree, tiled=True)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains, checkpoints and evaluates; resumes from `workdir` if it holds a run.

  Returns the final metrics (also written to `workdir/metrics.json`).
  """
  t_start = time.time()
  validate_config(config)
  os.makedirs(workdir, exist_ok=True)
  mesh = sharding.make_mesh(config.mesh)
  rules = sharding.logical_rules(config.get("sharding_rules", []))
  writer = metric_writer.MetricWriter(workdir)

  source = pipeline.make_source(config.data, "train", seed=config.seed)
  total_steps = config_utils.resolve_steps(
      config, "total", batch_size=config.batch_size, num_train_examples=len(source))
  warmup_steps = config_utils.resolve_steps(
      config.optim, "warmup", batch_size=config.batch_size,
      num_train_examples=len(source), default=0)
  model = build_model(config)
  tx, schedule = make_optimizer(config.optim, total_steps=total_steps,
                                warmup_steps=warmup_steps)

  abstract, state_shardings, init_state, step_fn = build_train_step(
      config, model, tx, schedule, mesh, rules)

  checkpointer = ckpt_lib.Checkpointer(
      workdir, every_steps=config.checkpoint_every_steps,
      keep=config.keep_checkpoints)
  checkpointer.check_signature({
      "model": model_kwargs(config) | {"name": config.model.name},
      "params": jax.tree_util.tree_map(lambda a: list(a.shape), abstract.params),
  })
  data_iter = iter(pipeline.train_dataset(
      config, process_index=jax.process_index(),
      process_count=jax.process_count(), source=source))
  state, start = checkpointer.restore_latest(abstract, data_iter)
  if state is None:
    state, start = init_state(), 0
    logging.info("Starting a new run in %s", workdir)
  else:
    _say(f"Resumed from the checkpoint at step {start} in {workdir}", flush=True)

  num_params = sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(abstract.params))
  _say(f"Model {config.model.name}: {num_params:,} parameters; {total_steps} steps "
        f"of {config.batch_size} examples; mesh {dict(mesh.shape)}", flush=True)

  spec = batch_spec(config)
  global_spec = batch_spec(config, local=False)
  compiled = step_fn.lower(abstract, global_spec).compile()
  flops_per_step = compiled_flops(compiled)
  peak = config.get("peak_flops") or measure_peak_flops()
  peak_total = peak * len(mesh.devices.flat)

  import cmjax.evaluators as evaluators_lib  # pylint: disable=g-import-not-at-top
  evaluators = evaluators_lib.build_evaluators(config, model)

  def run_evals(step, final=False):
    results = {}
    due = {name: ev for name, ev in evaluators.items()
           if final or (ev.every_steps and step % ev.every_steps == 0)}
    variables = host_local(state.variables()) if due else None
    for name, ev in due.items():
      t = time.time()
      results.update(dict(ev.run(variables)))
      results[f"{name}/seconds"] = time.time() - t
    if results:
      writer.write(step, results, prefix="eval ")
    return results

  steps_per_call = int(config.get("steps_per_call", 1))
  intervals = [config.log_every_steps, config.checkpoint_every_steps] + [
      ev.every_steps for ev in evaluators.values()]
  multi_fn = (build_multi_step(config, model, tx, schedule, mesh, state_shardings)
              if steps_per_call > 1 else None)

  last_eval = {}
  train_metrics = {}
  preempted = False
  t_window, steps_window, wait_window = time.perf_counter(), 0, 0.0
  with _Preemption() as preemption:
    step = start
    while step < total_steps:
      n = multi_step.chunk_length(step, total_steps, steps_per_call, intervals)
      t_wait = time.perf_counter()
      local = [next(data_iter) for _ in range(n)]
      wait_window += time.perf_counter() - t_wait
      if step == start:
        check_batch(local[0], spec)
      # Dispatch is asynchronous: the next iteration reads and places its
      # batches on the devices while this step still runs.
      if n == 1:
        state, metrics = compiled(state, sharding.global_batch(local[0], mesh))
      else:
        state, metrics = multi_fn(state, multi_step.global_stacked_batch(local, mesh))
      step += n
      steps_window += n

      if step % config.log_every_steps == 0 or step == total_steps:
        metrics = jax.device_get(metrics if n == 1 else multi_step.last(metrics))
        if not np.isfinite(metrics["loss"]):
          checkpointer.close()
          raise FloatingPointError(
              f"Loss became {metrics['loss']} at step {step}; the last good "
              f"checkpoint is kept in {workdir}/checkpoints. Lower config.optim.lr?")
        dt = time.perf_counter() - t_window
        step_time = dt / steps_window
        train_metrics = {k: float(v) for k, v in metrics.items()}
        train_metrics.update({
            "step_time_s": step_time,
            "examples_per_s": config.batch_size / step_time,
            "data_wait_frac": wait_window / dt,
        })
        if flops_per_step:
          train_metrics["mfu"] = flops_per_step / step_time / peak_total
        eta = (total_steps - step) * step_time
        writer.write(step, train_metrics, echo=False)
        _say(f"[{step}/{total_steps}] loss={train_metrics['loss']:.4f} "
              f"{train_metrics['examples_per_s']:.0f} ex/s "
              f"MFU={train_metrics.get('mfu', float('nan')):.1%} "
              f"data_wait={train_metrics['data_wait_frac']:.0%} "
              f"ETA {eta / 60:.1f} min", flush=True)
        t_window, steps_window, wait_window = time.perf_counter(), 0, 0.0

      checkpointer.save(step, state, data_iter)
      if preemption.requested:
        checkpointer.save(step, state, data_iter, force=True)
        checkpointer.close()
        _say(f"SIGTERM: saved a checkpoint at step {step}; rerun the same command "
              "to resume.", flush=True)
        preempted = True
        break
      if step < total_steps:
        last_eval = run_evals(step) or last_eval

  if preempted:
    writer.close()
    return {"preempted_at_step": step}

  checkpointer.save(step, state, data_iter, force=True)
  last_eval = run_evals(step, final=True)
  for name, ev in evaluators.items():
    if hasattr(ev, "artifacts"):  # non-scalar results, e.g. confusion matrices
      metric_writer.write_json(os.path.join(workdir, f"{name}.json"), ev.artifacts())
  checkpointer.close()
  writer.close()
  result = dict(last_eval)
  result.update({f"train/{k}": v for k, v in train_metrics.items()})
  result.update({"step": int(step), "wall_time_s": time.time() - t_start,
                 "num_params": num_params})
  metric_writer.write_json(os.path.join(workdir, "metrics.json"), result)
  _say("Final metrics:", flush=True)
  for k in sorted(last_eval):
    _say(f"  {k} = {last_eval[k]:.4f}", flush=True)
  return result
