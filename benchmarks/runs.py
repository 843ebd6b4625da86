"""Shared by the comparison benchmarks: train a config variant once, reuse it after."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train_or_reuse(config_arg: str, workdir: str, steps: int) -> dict:
  """Final metrics of `train.py --config configs/<config_arg>` in `workdir`.

  A run that already finished `steps` steps there is reused; an interrupted
  one resumes from its checkpoint (train.py's own behaviour).
  """
  path = os.path.join(workdir, "metrics.json")
  if os.path.exists(path):
    with open(path) as f:
      metrics = json.load(f)
    if metrics.get("step") == steps:
      print(f"reusing the finished run in {workdir}", flush=True)
      return metrics
  print(f"training {config_arg} in {workdir}", flush=True)
  subprocess.run([sys.executable, os.path.join(ROOT, "train.py"),
                  f"--config={os.path.join(ROOT, 'configs', config_arg)}",
                  f"--workdir={workdir}"], check=True, cwd=ROOT)
  with open(path) as f:
    return json.load(f)
