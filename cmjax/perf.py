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


def _fastest_matmul(n: int, min_repeats: int, min_seconds: float) -> float:
  """Seconds of the fastest float32 `[n, n] @ [n, n]` on device 0 among at least
  `min_repeats` timed calls spanning at least `min_seconds`."""
  x = jnp.ones((n, n), jnp.float32)
  f = jax.jit(lambda a: a @ a)
  f(x).block_until_ready()
  best, spent, repeats = float("inf"), 0.0, 0
  while repeats < min_repeats or spent < min_seconds:
    t = time.perf_counter()
    f(x).block_until_ready()
    dt = time.perf_counter() - t
    best, spent, repeats = min(best, dt), spent + dt, repeats + 1
  return best


def measure_peak_flops(
  n: int = 1024, min_repeats: int = 5, min_seconds: float = 0.5, max_n: int = 8192
) -> float:
  """Achieved float32 FLOP/s of one square matmul on device 0 (the MFU denominator).

  The fastest of at least `min_repeats` matmuls and `min_seconds`: a best-of
  over ~50 ms (5 matmuls) read 1.7x low in one of three identical runs on a
  2-core machine (MFU 119% where its twins read 68-72%), whatever briefly
  held the cores; a longer window outlasts such a spell. Where a matmul of
  side `n` takes under 5 ms (an accelerator: then it is mostly dispatch), the
  side doubles up to `max_n` first.
  """
  best = _fastest_matmul(n, min_repeats, 0.0)
  while best < 5e-3 and n < max_n:
    n *= 2
    best = _fastest_matmul(n, min_repeats, 0.0)
  return 2 * n**3 / min(best, _fastest_matmul(n, min_repeats, min_seconds))


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
