"""Scalars to the console, to TensorBoard event files, and to a JSON history.

TensorBoard files are written with the `tensorboard` package's own event writer,
so no TensorFlow is needed. Only process 0 writes.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Mapping

import jax
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter


class MetricWriter:

  def __init__(self, workdir: str, *, stream=None):
    self.active = jax.process_index() == 0
    self.stream = stream or sys.stdout
    self.tb = EventFileWriter(os.path.join(workdir, "tensorboard")) if self.active else None
    # One JSON object per write, appended: easy to plot from a notebook.
    self.jsonl = os.path.join(workdir, "metrics_history.jsonl")

  def write(self, step: int, scalars: Mapping[str, float], *, echo: bool = True,
            prefix: str = "") -> None:
    scalars = {k: float(v) for k, v in scalars.items()}
    if not self.active:
      return
    row = {"step": int(step), **scalars}
    with open(self.jsonl, "a") as f:
      f.write(json.dumps(row) + "\n")
    summary = summary_pb2.Summary(value=[
        summary_pb2.Summary.Value(tag=k, simple_value=v) for k, v in scalars.items()])
    self.tb.add_event(event_pb2.Event(wall_time=time.time(), step=int(step),
                                      summary=summary))
    if echo:
      body = "  ".join(f"{k}={_fmt(v)}" for k, v in scalars.items())
      print(f"{prefix}[step {step}] {body}", file=self.stream, flush=True)

  def flush(self) -> None:
    if self.tb:
      self.tb.flush()

  def close(self) -> None:
    if self.tb:
      self.tb.close()


def _fmt(v: float) -> str:
  if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
    return f"{v:.3e}"
  return f"{v:.4f}"


def write_json(path: str, payload: Mapping) -> None:
  """Atomic write, so a crash never leaves a half-written file behind."""
  if jax.process_index() != 0:
    return
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(payload, f, indent=1, sort_keys=True)
  os.replace(tmp, path)
