"""Performance accounting: FLOPs of a compiled step and the machine's matmul peak (MFU)."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp


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


class Throughput:
  """Step time, examples/s, MFU and data wait over the steps since the last log."""

  def __init__(self, batch_size: int, flops_per_step: float | None, peak_total: float):
    self.batch_size, self.flops, self.peak = batch_size, flops_per_step, peak_total
    self.reset()

  def reset(self):
    self.t0, self.steps, self.wait = time.perf_counter(), 0, 0.0

  def summary(self, metrics: dict) -> dict:
    dt = time.perf_counter() - self.t0
    step_time = dt / max(self.steps, 1)
    out = {k: float(v) for k, v in metrics.items()}
    out.update(
      step_time_s=step_time,
      examples_per_s=self.batch_size / step_time,
      data_wait_frac=self.wait / dt,
    )
    if self.flops:
      out["mfu"] = self.flops / step_time / self.peak
    self.reset()
    return out
