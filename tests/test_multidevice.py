"""The train step on 8 simulated CPU devices equals the 1-device step."""

import json
import os
import subprocess
import sys

import pytest

from tests import helpers


# The BatchNorm case checks that batch statistics are those of the global
# batch, not of each device's shard.
@pytest.mark.parametrize("config_arg", ["tiny", "tiny,image=resnet_bn"])
def test_train_step_on_8_devices_matches_1_device(config_arg):
  proc = subprocess.run(
      [sys.executable, os.path.join(helpers.ROOT, "tests", "multidevice_step.py"),
       config_arg],
      env=helpers.subprocess_env(), capture_output=True, text=True, timeout=600,
      cwd=helpers.ROOT)
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  for a, b in zip(result["loss1"], result["loss8"]):
    assert abs(a - b) <= 1e-5, result
  assert abs(result["grad_norm1"] - result["grad_norm8"]) <= 1e-5 * result["grad_norm1"]
  # Adam divides by sqrt(second moment): for near-zero gradients, rounding-level
  # differences in the reduction move a weight by a fraction of the learning
  # rate (1e-3 here), so parameters are compared at 1e-4.
  assert result["max_param_diff"] <= 1e-4, result
  if "resnet_bn" in config_arg:
    assert result["model_state_keys"] == ["batch_stats"], result
  assert result["max_model_state_diff"] <= 1e-5, result
