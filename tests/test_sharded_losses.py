"""Contrastive losses computed from per-device blocks, on 8 simulated devices."""

import json
import os
import subprocess
import sys

import pytest

from tests import helpers


@pytest.fixture(scope="module")
def result():
  proc = subprocess.run(
    [sys.executable, os.path.join(helpers.ROOT, "tests", "sharded_losses_check.py")],
    env=helpers.subprocess_env(),
    capture_output=True,
    text=True,
    timeout=600,
    cwd=helpers.ROOT,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", ["clip", "clip_valid", "siglip", "siglip_valid"])
def test_sharded_loss_and_gradients_equal_the_single_device_loss(result, case):
  loss_diff, grad_diff = result["parity"][case]
  assert loss_diff <= 1e-5, result["parity"]
  assert grad_diff <= 1e-5, result["parity"]  # relative to the largest gradient


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_memory_grows_linearly_with_the_per_device_batch(result, kind):
  """4x the per-device batch: linear would be 4x the memory, quadratic 16x."""
  sharded, plain = result["memory"][f"{kind}_sharded"], result["memory"][f"{kind}_plain"]
  assert sharded["512"] / sharded["128"] < 6, result["memory"]
  # The measurement can tell the two apart: the plain loss does grow quadratically.
  assert plain["512"] / plain["128"] > 10, result["memory"]
  assert sharded["512"] < plain["512"] / 2, result["memory"]
