"""Shared by the benchmarks: a config's compiled train step on one real batch.

The benchmarks time the step this way, apart from training, so that every
measurement sees the same batch and no data loading, logging or evaluation.
"""

import time

import flax.linen as nn
import jax

from cmjax import sharding, trainer
from cmjax.data import pipeline


class CompiledStep:
  """The config's jitted train step, its state and one real batch, ready to time."""

  def __init__(self, config):
    mesh = sharding.make_mesh(config.mesh)
    rules = sharding.logical_rules(config.sharding_rules)
    model = trainer.build_model(config)
    tx, schedule = trainer.make_optimizer(config.optim, total_steps=1000, warmup_steps=10)
    with mesh, nn.logical_axis_rules(rules):
      _, shardings, init = trainer.create_train_state(model, tx, config, mesh, rules)
      self.state = init()
    self.step = jax.jit(
        trainer.make_train_step(model, tx, schedule, trainer.make_loss_fn(config), config),
        in_shardings=(shardings, sharding.batch_sharding(mesh)),
        out_shardings=(shardings, sharding.replicated(mesh)),
        donate_argnums=(0,))
    self.batch = sharding.global_batch(next(iter(pipeline.train_dataset(config))), mesh)
    self.batch_size = config.batch_size
    self.run(1)  # compile and warm up

  def run(self, steps: int) -> float:
    """Runs `steps` steps; returns examples/s."""
    t = time.perf_counter()
    m = None
    for _ in range(steps):
      self.state, m = self.step(self.state, self.batch)
    jax.block_until_ready(m)
    return steps * self.batch_size / (time.perf_counter() - t)
