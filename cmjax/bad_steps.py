"""Counting the updates the train step skipped as non-finite, and giving up on a run
that keeps making them.

`steps.SkipNonFinite` marks each skipped update in `metrics['skipped']`. The
loop adds those marks up on the devices (`add`, asynchronous like the step)
and reads the counts only where it reads metrics anyway (`check`), so guarding
costs no synchronisation per step. After `config.max_bad_steps` skipped
updates in a row, `check` raises `BadStepsError` naming the steps, the
examples of the first bad batch, the newest verified checkpoint and the
likely causes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

DEFAULT_MAX_BAD_STEPS = 20


class BadStepsError(FloatingPointError):
  """Too many updates in a row had NaN or infinite loss or gradients."""


@jax.jit
def _add(counts, skipped):
  """counts [total, in a row] after the marks `skipped` ([n] of 0/1) in order."""
  skipped = jnp.atleast_1d(skipped).astype(jnp.int32)
  n = skipped.shape[0]
  last_good = jnp.max(jnp.where(skipped == 0, jnp.arange(n), -1))
  in_a_row = jnp.where(last_good < 0, counts[1] + n, n - 1 - last_good)
  return jnp.stack([counts[0] + skipped.sum(), in_a_row])


class BadStepCounter:
  def __init__(self, max_bad_steps: int, describe_batch, newest_checkpoint):
    """`describe_batch(step)`: the examples of the batch of `step` (0-based), as
    text; `newest_checkpoint()`: the newest verified checkpoint step, or None."""
    if max_bad_steps < 1:
      raise ValueError(f"config.max_bad_steps={max_bad_steps}; expected at least 1")
    self.max_bad_steps = max_bad_steps
    self.describe_batch, self.newest_checkpoint = describe_batch, newest_checkpoint
    self.counts = jnp.zeros((2,), jnp.int32)
    self.total = 0

  def add(self, metrics) -> None:
    if "skipped" in metrics:
      self.counts = _add(self.counts, metrics["skipped"])

  def check(self, step: int) -> int:
    """Reads the counts (the loop syncs here anyway); returns the total skipped.

    `step` is the number of batches consumed so far.
    """
    total, in_a_row = (int(v) for v in np.asarray(jax.device_get(self.counts)))
    self.total = total
    if in_a_row < self.max_bad_steps:
      return total
    first = step - in_a_row  # 0-based index of the first bad batch of this run
    newest = self.newest_checkpoint()
    raise BadStepsError(
      f"The last {in_a_row} updates (steps {first + 1} to {step}) all had NaN or "
      f"infinite loss or gradients and were skipped (config.max_bad_steps="
      f"{self.max_bad_steps}; {total} skipped in all). The first of those batches: "
      f"{self.describe_batch(first)}. The newest verified checkpoint is "
      f"{'step ' + str(newest) if newest is not None else 'none'}; rerunning resumes "
      "from it. Likely causes, most likely first: bad input data (NaN or infinite "
      "values, out-of-range ids) in those examples; a learning rate too high "
      "(config.optim.lr) or no warm-up; a loss that overflows in low precision."
    )
