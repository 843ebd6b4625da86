"""Several train steps per compiled call (`config.steps_per_call`, cmjax/multi_step.py)."""

import json
import os

import numpy as np
import pytest

from cmjax import multi_step
from tests import helpers


def _partition(start, total, k, intervals):
  """The call lengths the trainer runs from `start` to `total`."""
  out, step = [], start
  while step < total:
    n = multi_step.chunk_length(step, total, k, intervals)
    out.append(n)
    step += n
  return out


def test_calls_end_at_every_log_checkpoint_and_eval_step():
  lengths = _partition(0, 23, 4, [6, 10, 0, None])
  ends = np.cumsum(lengths)
  assert max(lengths) == 4 and sum(lengths) == 23
  for every in (6, 10):
    for s in range(every, 23, every):
      assert s in ends, (every, s, ends)
  assert ends[-1] == 23


def test_resuming_at_a_checkpoint_splits_the_rest_as_the_uninterrupted_run():
  intervals, k = [50, 200], 4
  whole = np.cumsum(_partition(0, 800, k, intervals))
  for ckpt in (200, 400, 600):
    rest = ckpt + np.cumsum(_partition(ckpt, 800, k, intervals))
    np.testing.assert_array_equal(rest, whole[whole > ckpt])


def test_steps_per_call_must_be_positive():
  with pytest.raises(ValueError, match="steps_per_call"):
    multi_step.chunk_length(0, 10, 0, [])


@pytest.mark.slow
def test_three_steps_per_call_train_as_one_step_per_call(tmp_path):
  """Same logged losses and final parameters.

  The scan compiles to other fusions than the single step, so the sums round
  differently (~1e-6); AdamW turns that into update differences of up to ~2e-5
  on parameters whose gradients are near zero, against updates of ~lr = 1e-3.
  """
  overrides = ["--config.log_every_steps=3", "--config.checkpoint_every_steps=3"]
  runs = {}
  for k in (1, 3):
    workdir = str(tmp_path / f"k{k}")
    helpers.run_train(
      workdir, "av_digits_classify.py:tiny", *overrides, f"--config.steps_per_call={k}"
    )
    with open(os.path.join(workdir, "metrics_history.jsonl")) as f:
      losses = [r["loss"] for r in map(json.loads, f) if "loss" in r]
    runs[k] = helpers.load_params(workdir, 6), losses
  (p1, l1), (p3, l3) = runs[1], runs[3]
  assert len(l1) == len(l3) == 2  # logged at steps 3 and 6
  np.testing.assert_allclose(l3, l1, rtol=1e-5, atol=1e-6)
  assert p1.keys() == p3.keys()
  for key in p1:
    np.testing.assert_allclose(p3[key], p1[key], rtol=1e-3, atol=1e-4, err_msg=key)
  # The runs did train: parameters moved from the first checkpoint.
  first = helpers.load_params(str(tmp_path / "k3"), 3)
  assert any(not np.allclose(first[key], p3[key]) for key in p3)
