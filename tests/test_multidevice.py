"""The train step on 8 simulated CPU devices equals the 1-device step.

Data parallel, FSDP (parameters and optimizer state split over `fsdp`) and
tensor parallel (heads and MLP units split over `model`), each from the same
config with only `config.mesh` changed.
"""

import json
import os
import subprocess
import sys

import pytest

from tests import helpers

# SGD makes the updated parameters a linear function of the gradient, so they
# must agree to 1e-5 like the loss. Adam divides by sqrt(second moment): for
# near-zero gradients, rounding-level differences in the reduction move a
# weight by a fraction of the learning rate (1e-3 here), so with Adam the
# parameters are compared at 1e-4. The BatchNorm case checks that batch
# statistics are those of the global batch, not of each device's shard.
RUNS = {  # (config argument, optimizer): {mesh: axes the parameters must be split over}
  ("tiny", "sgd"): {
    "data=8": [],
    "data=4,model=2": ["model"],
    # The contrastive loss from per-device blocks (sharded_losses.py).
    "data=2,fsdp=2,model=2+sharded_loss": ["fsdp", "model"],
  },
  # FSDP alone (and BatchNorm): here rather than with SGD too, to save a compile.
  ("tiny,image=resnet_bn", "adamw"): {"data=2,fsdp=4": ["fsdp"]},
}


@pytest.mark.parametrize("config_arg,optimizer", sorted(RUNS))
def test_train_step_on_8_devices_matches_1_device(config_arg, optimizer):
  meshes = RUNS[(config_arg, optimizer)]
  proc = subprocess.run(
    [
      sys.executable,
      os.path.join(helpers.ROOT, "tests", "multidevice_step.py"),
      config_arg,
      optimizer,
      *meshes,
    ],
    env=helpers.subprocess_env(),
    capture_output=True,
    text=True,
    timeout=600,
    cwd=helpers.ROOT,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = json.loads(proc.stdout.strip().splitlines()[-1])
  assert sorted(results) == sorted(meshes)
  param_tol = 1e-5 if optimizer == "sgd" else 1e-4
  for mesh, result in results.items():
    for a, b in zip(result["loss1"], result["loss8"]):
      assert abs(a - b) <= 1e-5 * max(1.0, abs(a)), (mesh, result)
    assert abs(result["grad_norm1"] - result["grad_norm8"]) <= 1e-5 * result["grad_norm1"]
    assert result["max_param_diff"] <= param_tol, (mesh, result)
    # The parameters and the optimizer state really are split as the mesh says.
    assert result["param_axes"] == meshes[mesh], (mesh, result)
    assert result["opt_state_axes"] == meshes[mesh], (mesh, result)
    assert ("sharded" in result["loss_fn"]) == mesh.endswith("+sharded_loss"), result
    if "resnet_bn" in config_arg:
      assert result["model_state_keys"] == ["batch_stats"], (mesh, result)
    assert result["max_model_state_diff"] <= 1e-5, (mesh, result)
