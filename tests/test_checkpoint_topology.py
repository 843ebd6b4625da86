"""A checkpoint saved on 8 devices (data=2, fsdp=4) restores onto 1, 2 and 4
devices and onto another 8-device partitioning, and training goes on with the
same loss."""

import json
import os
import subprocess
import sys

from tests import helpers


def test_checkpoint_restores_onto_other_meshes(tmp_path):
  proc = subprocess.run(
    [
      sys.executable,
      os.path.join(helpers.ROOT, "tests", "topology_check.py"),
      str(tmp_path / "run"),
    ],
    env=helpers.subprocess_env(),
    capture_output=True,
    text=True,
    timeout=600,
    cwd=helpers.ROOT,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  expected_axes = {
    "1 device": [],
    "2 devices, data parallel": [],
    "4 devices, fsdp": ["fsdp"],
    "8 devices, data=4 model=2": ["model"],
  }
  assert sorted(result) == sorted(expected_axes)
  for target, r in result.items():
    assert r["step"] == 2, (target, r)
    # Laid out for the new mesh, not the one it was saved from.
    assert r["param_axes"] == expected_axes[target], (target, r)
    for got, want in zip(r["losses"], r["reference"]):
      assert abs(got - want) <= 1e-5 * abs(want), (target, r)
