"""`workdir/config.json`: what a run was started with, and what a resume changes."""

from __future__ import annotations

import json
import os

from cmjax import metric_writer


def write(config, exp, workdir: str) -> None:
  """Writes the resolved config, what the data hold and the run's length."""
  payload = {
    "config": json.loads(config.to_json_best_effort()),
    "data": exp.spec.summary(),
    "total_steps": exp.total_steps,
  }
  metric_writer.write_json(os.path.join(workdir, "config.json"), payload)


def length_change_note(workdir: str, total_steps: int) -> str | None:
  """What to tell a resumed run given another length (None if it kept its own).

  Reads the `config.json` the run wrote when it started, so call it before
  `write`. The run goes on under the new length's schedule.
  """
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return None
  before = metric_writer.read_json(path).get("total_steps")
  if before is None or before == total_steps:
    return None
  return (
    f"Note: this run was started for {before} steps and now goes to {total_steps}. From "
    f"here on its learning-rate schedule (warm-up, decay) is the {total_steps}-step one, "
    "so the result is neither length's run from scratch; use a new --workdir for that."
  )
