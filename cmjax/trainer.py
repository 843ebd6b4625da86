"""The training loop `train_and_evaluate`, preemption handling, and `load_trained`.

Everything the loop drives is built by `cmjax.experiment.build` from registered
parts (dataset, model, objective, optimizer, train step, evaluators); the loop
names none of them. The step is one pure function `(state, batch) -> (state,
metrics)`, compiled once with explicit shardings; side effects (data, logging,
checkpoints, evaluation) live here.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from cmjax import bad_steps, init_from, metric_writer, multi_step, perf, run_config, sharding
from cmjax import checkpoint as ckpt_lib
from cmjax import evaluators as evaluators_lib
from cmjax import experiment as experiment_lib
from cmjax.data import pipeline
from cmjax.data import spec as spec_lib


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


def _say(*args) -> None:
  """Progress on stdout, from process 0 only (every process runs the same loop)."""
  if jax.process_index() == 0:
    print(*args, flush=True)


def host_local(tree: Any) -> Any:
  """The full value of every (possibly multi-process) global array, on this host.

  Evaluators run the model with plain `jax.jit` on each process's own device;
  with several processes the train state's arrays span devices of other
  processes, so they are gathered first (every process gets the same copy).
  """
  if jax.process_count() == 1:
    return tree
  return multihost_utils.process_allgather(tree, tiled=True)


class _Evaluations:
  """The evaluators of `config.evals`, run when due; results go to the writer."""

  def __init__(self, exp, writer):
    self.evaluators = evaluators_lib.build_evaluators(
      exp.config,
      evaluators_lib.EvalContext(config=exp.config, dataset=exp.dataset, model=exp.model),
    )
    self.writer = writer
    self.intervals = [ev.every_steps for ev in self.evaluators.values()]

  def run(self, step: int, state, final: bool = False) -> dict:
    due = {
      name: ev
      for name, ev in self.evaluators.items()
      if final or (ev.every_steps and step % ev.every_steps == 0)
    }
    results = {}
    variables = host_local(state.variables()) if due else None
    for name, ev in due.items():
      t = time.time()
      results.update(dict(ev.run(variables)))
      results[f"{name}/seconds"] = time.time() - t
      if hasattr(ev, "pictures"):  # images of what it saw, e.g. reconstructions
        self.writer.write_images(step, {f"{name}/{k}": v for k, v in ev.pictures().items()})
    if results:
      self.writer.write(step, results, prefix="eval ")
    return results

  def write_artifacts(self, workdir: str) -> None:
    for name, ev in self.evaluators.items():
      if hasattr(ev, "artifacts"):  # non-scalar results, e.g. confusion matrices
        metric_writer.write_json(os.path.join(workdir, f"{name}.json"), ev.artifacts())


def _prepare(config, workdir: str):
  """Builds the experiment, restores the newest checkpoint; returns the run's parts."""
  exp = experiment_lib.build(config)
  abstract, shardings, init_state = exp.init_state()
  checkpointer = ckpt_lib.Checkpointer(
    workdir,
    every_steps=config.checkpoint_every_steps,
    keep=config.keep_checkpoints,
    run_config=json.loads(config.to_json_best_effort()),
  )
  checkpointer.check_signature(exp.signature(abstract))
  data_iter = iter(
    pipeline.train_dataset(
      config,
      exp.dataset,
      process_index=jax.process_index(),
      process_count=jax.process_count(),
      source=exp.train_source,
    )
  )
  state, start = checkpointer.restore_latest(abstract, data_iter)
  if state is None:
    # A new run may start from another run's parameters (config.init_from).
    spec = config.get("init_from") or {}
    loaded = init_from.load(spec, abstract.params) if spec.get("path") else None
    state, start = init_state(loaded), 0
    logging.info("Starting a new run in %s", workdir)
  else:
    _say(f"Resumed from the checkpoint at step {start} in {workdir}")
  return exp, abstract, shardings, checkpointer, data_iter, state, start


def _log_line(step: int, total: int, m: dict) -> str:
  eta = (total - step) * m["step_time_s"]
  return (
    f"[{step}/{total}] loss={m['loss']:.4f} {m['examples_per_s']:.0f} ex/s "
    f"MFU={m.get('mfu', float('nan')):.1%} data_wait={m['data_wait_frac']:.0%} "
    f"ETA {eta / 60:.1f} min"
  )


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains, checkpoints and evaluates; resumes from `workdir` if it holds a run.

  Returns the final metrics (also written to `workdir/metrics.json`). Rerunning a
  finished run changes nothing and returns its metrics.
  """
  t_start = time.time()
  os.makedirs(workdir, exist_ok=True)
  # The MFU denominator, measured before this run starts anything that could
  # compete with it (data workers, checkpoint threads).
  peak = config.get("peak_flops") or perf.measure_peak_flops()
  exp, abstract, shardings, checkpointer, data_iter, state, start = _prepare(config, workdir)
  metrics_path = os.path.join(workdir, "metrics.json")
  if start >= exp.total_steps and os.path.exists(metrics_path):
    checkpointer.close()
    _say(
      f"This run already finished (step {start} of {exp.total_steps}); its metrics are "
      f"in {metrics_path}, left as they are."
    )
    return metric_writer.read_json(metrics_path)
  if start and (note := run_config.length_change_note(workdir, exp.total_steps)):
    _say(note)
  run_config.write(config, exp, workdir)
  writer = metric_writer.MetricWriter(workdir, resume_step=start)
  num_params = sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(abstract.params))
  _say(
    f"Model {config.model.name}: {num_params:,} parameters; {exp.total_steps} steps "
    f"of {config.batch_size} examples; mesh {dict(exp.mesh.shape)}; MFU against "
    f"{peak / 1e9:,.0f} GFLOP/s per device ({'set' if config.get('peak_flops') else 'measured'})"
  )
  with jax.set_mesh(exp.mesh):
    compiled = exp.jit_step(shardings).lower(abstract, exp.batch_spec(local=False)).compile()
  clock = perf.Throughput(
    config.batch_size, perf.compiled_flops(compiled), peak * len(exp.mesh.devices.flat)
  )
  evals = _Evaluations(exp, writer)
  multi_fn = exp.jit_multi_step(shardings) if config.get("steps_per_call", 1) > 1 else None
  loop = _Loop(exp, compiled, multi_fn, checkpointer, writer, evals, clock, workdir)
  step, train_metrics, preempted = loop.run(state, start, data_iter)
  writer.close()
  if preempted:
    return {"preempted_at_step": step}
  last_eval = loop.last_eval
  result = dict(last_eval)
  result.update({f"train/{k}": v for k, v in train_metrics.items()})
  result.update({"step": int(step), "wall_time_s": time.time() - t_start, "num_params": num_params})
  result.update(exp.dataset.report())  # e.g. rows skipped as bad data
  metric_writer.write_json(metrics_path, result)
  _say("Final metrics:")
  for k in sorted(last_eval):
    _say(f"  {k} = {last_eval[k]:.4f}")
  return result


class _Loop:
  """The steps from `start` to the end: data, step, logs, checkpoints, evaluations."""

  def __init__(self, exp, compiled, multi_fn, checkpointer, writer, evals, clock, workdir):
    self.exp, self.compiled, self.multi_fn = exp, compiled, multi_fn
    self.checkpointer, self.writer, self.evals, self.clock = checkpointer, writer, evals, clock
    self.workdir = workdir
    config = exp.config
    self.steps_per_call = int(config.get("steps_per_call", 1))
    self.intervals = [config.log_every_steps, config.checkpoint_every_steps] + evals.intervals
    self.last_eval = {}
    self.bad = bad_steps.BadStepCounter(
      int(config.get("max_bad_steps", bad_steps.DEFAULT_MAX_BAD_STEPS)),
      lambda s: pipeline.describe_batch(config, exp.dataset, s, source=exp.train_source),
      checkpointer.newest_verified,
    )

  def run(self, state, start: int, data_iter):
    """Returns `(last step, last train metrics, whether SIGTERM stopped the run)`."""
    exp, config, total = self.exp, self.exp.config, self.exp.total_steps
    local_spec, train_metrics, step = exp.batch_spec(), {}, start
    with _Preemption() as preemption:
      while step < total:
        n = multi_step.chunk_length(step, total, self.steps_per_call, self.intervals)
        t_wait = time.perf_counter()
        local = [next(data_iter) for _ in range(n)]
        self.clock.wait += time.perf_counter() - t_wait
        if step == start:
          spec_lib.check_batch(local[0], local_spec, f"dataset {exp.spec.dataset!r}, train split")
        # Dispatch is asynchronous: the next iteration reads and places its
        # batches on the devices while this step still runs.
        if n == 1:
          state, metrics = self.compiled(state, sharding.global_batch(local[0], exp.mesh))
        else:
          state, metrics = self.multi_fn(state, multi_step.global_stacked_batch(local, exp.mesh))
        self.bad.add(metrics)
        step += n
        self.clock.steps += n
        if step % config.log_every_steps == 0 or step == total:
          train_metrics = self.log(step, metrics if n == 1 else multi_step.last(metrics))
        self.checkpointer.save(step, state, data_iter)
        if preemption.requested:
          self.checkpointer.save(step, state, data_iter, force=True)
          self.checkpointer.close()
          _say(f"SIGTERM: saved a checkpoint at step {step}; rerun the same command to resume.")
          return step, train_metrics, True
        if step < total:
          self.last_eval = self.evals.run(step, state) or self.last_eval
    self.checkpointer.save(step, state, data_iter, force=True)
    self.last_eval = self.evals.run(step, state, final=True)
    self.evals.write_artifacts(self.workdir)
    self.checkpointer.close()
    return step, train_metrics, False

  def log(self, step: int, metrics) -> dict:
    metrics = jax.device_get(metrics)
    try:
      skipped = self.bad.check(step)  # stops after config.max_bad_steps in a row
    except bad_steps.BadStepsError:
      self.checkpointer.close()
      raise
    if "skipped" not in metrics and not np.isfinite(metrics["loss"]):  # unguarded step
      self.checkpointer.close()
      raise FloatingPointError(
        f"Loss became {metrics['loss']} at step {step} (config.skip_non_finite=False); "
        f"the last good checkpoint is kept in {self.workdir}/checkpoints."
      )
    metrics = {k: v for k, v in metrics.items() if k != "skipped"}
    train_metrics = dict(self.clock.summary(metrics), skipped_updates=skipped)
    self.writer.write(step, train_metrics, echo=False)
    _say(_log_line(step, self.exp.total_steps, train_metrics))
    return train_metrics


def load_trained(config, workdir: str, step: int | None = None):
  """`(model, variables, step)` of the run in `workdir` (newest checkpoint by default).

  `variables` is what `model.apply` takes: `{'params': ...}` plus any state
  such as BatchNorm's `batch_stats`.
  """
  exp = experiment_lib.build(config, total_steps=1, warmup_steps=0)
  abstract, _, _ = exp.init_state()
  checkpointer = ckpt_lib.Checkpointer(workdir, every_steps=1, keep=1)
  try:
    state, step = checkpointer.restore_state(abstract, step)
  finally:
    checkpointer.close()
  return exp.model, state.variables(), step
