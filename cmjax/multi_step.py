"""Several train steps in one compiled call (`config.steps_per_call = k`).

Why: XLA:CPU allocates a fresh temporary buffer for every execution of a
compiled function (about 0.5 GB for the default experiment's step); with
glibc's default malloc settings the kernel zeroes each of its pages on first
touch, ~120k page faults and 0.4 s of system time per step on a 2-core CPU.
Inside one call the k steps reuse the same temporaries, so the faults are paid
once per call. `cmjax/host_memory.py` (on in train.py) now removes those faults
for every call, which leaves k=4 only ~3% ahead of k=1 on CPU
(benchmarks/train_throughput.py). On accelerators it also removes k-1
dispatches per call. The cost is compile time: the k steps are unrolled into
one executable (about twice the compile time of one step at k=4).

The trainer never lets a call cross a step where it logs, checkpoints or
evaluates (`chunk_length`), so those happen at the same steps as with k=1, and
a run resumed from a checkpoint splits the remaining steps the same way as the
uninterrupted run.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from cmjax import sharding


def scan_steps(train_step: Callable[[Any, Any], tuple[Any, Any]]):
  """`(state, batches) -> (state, metrics)` running `train_step` over `batches`.

  Args:
    train_step: the pure `(state, batch) -> (state, metrics)`.

  Returns:
    A function whose `batches` has a leading `[steps]` axis on every array
    (`[steps, batch, ...]`) and whose metrics have it too (`[steps]` scalars).
  """

  def run(state, batches):
    # Unrolled: XLA:CPU ran the tiny model's step 3x slower as a while-loop
    # body than as straight-line code; unrolled, buffer assignment still
    # reuses one step's temporaries for the next.
    return jax.lax.scan(train_step, state, batches, unroll=True)

  return run


def chunk_length(step: int, total_steps: int, steps_per_call: int, intervals: Iterable[int]) -> int:
  """How many steps the next call runs, starting after `step` steps.

  At most `steps_per_call`, never past `total_steps`, and never past the next
  multiple of any of `intervals` (log / checkpoint / eval periods; 0 or None
  are ignored), so the call ends exactly where the loop has work to do.
  """
  if steps_per_call < 1:
    raise ValueError(f"config.steps_per_call={steps_per_call}: expected a positive integer")
  end = min(step + steps_per_call, total_steps)
  for every in intervals:
    if every:
      end = min(end, (step // every + 1) * every)
  return max(end - step, 1)


def stacked_batch_sharding(mesh: Mesh) -> NamedSharding:
  """`[steps, batch, ...]`: steps replicated, batch split as `sharding.batch_sharding`."""
  return NamedSharding(mesh, P(None, sharding.BATCH_AXES))


def global_stacked_batch(local_batches: Sequence[Mapping[str, np.ndarray]], mesh: Mesh) -> dict:
  """Stacks per-host batches into global `[steps, global_batch, ...]` jax.Arrays."""
  out_sharding = stacked_batch_sharding(mesh)
  n = jax.process_count()
  out = {}
  for key in local_batches[0]:
    value = np.stack([np.asarray(b[key]) for b in local_batches])
    shape = (value.shape[0], value.shape[1] * n) + value.shape[2:]
    out[key] = jax.make_array_from_process_local_data(out_sharding, value, shape)
  return out


def last(metrics: Any) -> Any:
  """The metrics of the call's last step, from `[steps]`-stacked metrics."""
  return jax.tree.map(lambda m: m[-1], metrics)
