"""Shared by the benchmarks: a config's compiled train step on one batch.

The benchmarks time the step this way, apart from training, so that every
measurement sees the same batch and no data loading, logging or evaluation.
The step is the trainer's own (`cmjax.experiment`, `cmjax.steps`): jitted once with
explicit shardings and the state donated.
"""

import time

import jax

from cmjax import experiment, multi_step, sharding
from cmjax.data import pipeline


class CompiledStep:
  """The config's jitted train step, its state and one batch, ready to time.

  `batch` (host arrays of the config's batch spec) defaults to the first batch
  of the config's training pipeline.
  """

  def __init__(self, config, batch=None, warm_up: bool = True):
    self.mesh = sharding.make_mesh(config.mesh)
    # A fixed schedule length: the benchmarks run far fewer steps than that.
    exp = experiment.build(
      config,
      self.mesh,
      total_steps=1000,
      warmup_steps=min(config.optim.get("warmup_steps") or 0, 1000),
    )
    self.schedule = exp.schedule
    _, shardings, init = exp.init_state()
    self.step = exp.jit_step(shardings)
    self.state = init()
    if batch is None:
      batch = next(iter(pipeline.train_dataset(config)))
    self.batch = sharding.global_batch(batch, self.mesh)
    self.batch_size = config.batch_size
    # As the trainer: k steps per compiled call (cmjax/multi_step.py).
    self.steps_per_call = int(config.get("steps_per_call", 1))
    if self.steps_per_call > 1:
      self.multi = exp.jit_multi_step(shardings)
      self.batches = multi_step.global_stacked_batch([batch] * self.steps_per_call, self.mesh)
    self.metrics = None
    if warm_up:  # compile and warm up both executables
      self.run(1)
      if self.steps_per_call > 1:
        self.run(self.steps_per_call)

  def compiled(self):
    """The single step's compiled executable (for XLA's cost analysis and HLO)."""
    return self.step.lower(self.state, self.batch).compile()

  def run(self, steps: int) -> float:
    """Runs `steps` steps (whole calls of `steps_per_call`, then single steps);
    returns examples/s."""
    t = time.perf_counter()
    calls, single = divmod(steps, self.steps_per_call) if self.steps_per_call > 1 else (0, steps)
    for _ in range(calls):
      self.state, metrics = self.multi(self.state, self.batches)
      self.metrics = multi_step.last(metrics)
    for _ in range(single):
      self.state, self.metrics = self.step(self.state, self.batch)
    jax.block_until_ready(self.metrics)
    return steps * self.batch_size / (time.perf_counter() - t)
