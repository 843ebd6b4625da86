"""Shared by the comparison benchmarks: train a config variant once, reuse it after."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read_record(path: str) -> dict:
  if path and os.path.exists(path):
    with open(path) as f:
      return json.load(f)
  return {}


def _add_to_record(path: str, config_arg: str, metrics: dict) -> None:
  record = _read_record(path)
  record[config_arg] = metrics
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(record, f, indent=1, sort_keys=True)
  os.replace(tmp, path)


def _check_length(workdir: str, steps: int) -> None:
  """Raises if `workdir` holds a run of another length: train.py would resume it
  and go on to `steps` with the other run's schedule, a run of neither length."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return
  with open(path) as f:
    total = json.load(f).get("total_steps")
  if total is not None and total != steps:
    raise ValueError(
      f"{workdir} holds a run of {total} steps, not {steps}: give each length its own "
      "folder (or remove that run)"
    )


def train_or_reuse(config_arg: str, workdir: str, steps: int, record: str | None = None) -> dict:
  """Final metrics of `train.py --config configs/<config_arg>` in `workdir`.

  Reused, in this order: the entry `config_arg` of the JSON file `record`
  (final metrics of finished runs, kept in the repository so that a table can
  be completed on another machine); a run that already finished `steps`
  steps in `workdir`. An interrupted run resumes from its checkpoint
  (train.py's own behaviour). Every finished run is added to `record`.
  """
  recorded = _read_record(record).get(config_arg)
  if recorded is not None and recorded.get("step") == steps:
    print(f"reusing the recorded run {config_arg}", flush=True)
    return recorded
  _check_length(workdir, steps)
  path = os.path.join(workdir, "metrics.json")
  metrics = None
  if os.path.exists(path):
    with open(path) as f:
      metrics = json.load(f)
    if metrics.get("step") == steps:
      print(f"reusing the finished run in {workdir}", flush=True)
    else:
      metrics = None
  if metrics is None:
    print(f"training {config_arg} in {workdir}", flush=True)
    subprocess.run(
      [
        sys.executable,
        os.path.join(ROOT, "train.py"),
        f"--config={os.path.join(ROOT, 'configs', config_arg)}",
        f"--workdir={workdir}",
      ],
      check=True,
      cwd=ROOT,
    )
    with open(path) as f:
      metrics = json.load(f)
  if record:
    _add_to_record(record, config_arg, metrics)
  return metrics
