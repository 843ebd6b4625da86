"""Scalars to the console, to TensorBoard event files, and to a JSON history.

TensorBoard files are written with the `tensorboard` package's own event writer,
so no TensorFlow is needed. Only process 0 writes.

`metrics_history.jsonl` holds one JSON object per `write`: `{"step": N, key: value,
...}`. A run resumed from the checkpoint at step S first drops the rows after S
(`MetricWriter(workdir, resume_step=S)`), so the steps it trains again are not
recorded twice.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from typing import Mapping

import jax
import numpy as np
from absl import logging
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from cmjax import atomic_write

HISTORY_FILE = "metrics_history.jsonl"


class MetricWriter:
  """Writes scalars of one run; only process 0 writes anything.

  Args:
    workdir: the run's directory (TensorBoard files go to `workdir/tensorboard`).
    stream: where echoed lines go (default stdout).
    resume_step: the step of the checkpoint the run resumed from, or None for a
      run that continues nothing. History rows after it are dropped, since the
      resumed run writes those steps again. Pass 0 to start a run afresh in a
      workdir whose previous attempt died before its first checkpoint.
  """

  def __init__(self, workdir: str, *, stream=None, resume_step: int | None = None):
    self.active = jax.process_index() == 0
    self.stream = stream or sys.stdout
    # One JSON object per write, appended: easy to plot from a notebook.
    self.jsonl = os.path.join(workdir, HISTORY_FILE)
    if self.active and resume_step is not None:
      dropped = drop_history_after(self.jsonl, resume_step)
      if dropped:
        logging.info(
          "%s: dropped %d rows after step %d (resumed run).", self.jsonl, dropped, resume_step
        )
    self.tb = EventFileWriter(os.path.join(workdir, "tensorboard")) if self.active else None
    self.workdir = workdir

  def write(
    self, step: int, scalars: Mapping[str, float], *, echo: bool = True, prefix: str = ""
  ) -> None:
    """Appends `scalars` at `step` to the history and TensorBoard; `echo` prints them.

    Lines whose `prefix` starts with "eval" are summarised (`format_eval_line`):
    evaluators write dozens of metrics, too many to read in one console line.
    """
    scalars = {k: float(v) for k, v in scalars.items()}
    if not self.active:
      return
    row = {"step": int(step), **scalars}
    try:
      with open(self.jsonl, "a") as f:
        f.write(json.dumps(row) + "\n")
    except OSError as e:  # a full disk: say which file (a bare write does not)
      raise OSError(e.errno, e.strerror, e.filename or self.jsonl) from e
    summary = summary_pb2.Summary(
      value=[summary_pb2.Summary.Value(tag=k, simple_value=v) for k, v in scalars.items()]
    )
    self.tb.add_event(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))
    if echo:
      if prefix.startswith("eval"):
        line = format_eval_line(step, scalars, prefix=prefix)
      else:
        body = "  ".join(f"{k}={_fmt(v)}" for k, v in scalars.items())
        line = f"{prefix}[step {step}] {body}"
      print(line, file=self.stream, flush=True)

  def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
    """uint8 `[H, W, 3]` images at `step`: to TensorBoard (under their names)
    and, the latest of each, to `<workdir>/<name with / as _>.png`."""
    if not self.active or not images:
      return
    values = []
    for tag, image in images.items():
      png = encode_png(image)
      path = os.path.join(self.workdir, tag.replace("/", "_") + ".png")
      with open(path, "wb") as f:
        f.write(png)
      h, w = np.asarray(image).shape[:2]
      values.append(
        summary_pb2.Summary.Value(
          tag=tag,
          image=summary_pb2.Summary.Image(
            height=h, width=w, colorspace=3, encoded_image_string=png
          ),
        )
      )
    summary = summary_pb2.Summary(value=values)
    self.tb.add_event(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))

  def flush(self) -> None:
    if self.tb:
      self.tb.flush()

  def close(self) -> None:
    if self.tb:
      self.tb.close()


def encode_png(image: np.ndarray) -> bytes:
  """uint8 `[H, W, 3]` -> PNG bytes."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  buffer = io.BytesIO()
  Image.fromarray(np.asarray(image, np.uint8)).save(buffer, format="PNG")
  return buffer.getvalue()


def _fmt(v: float) -> str:
  if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
    return f"{v:.3e}"
  return f"{v:.4f}"


def drop_history_after(path: str, step: int) -> int:
  """Removes the rows of the JSONL history at `path` whose step is after `step`.

  The file is rewritten atomically (temp file + os.replace), so a crash here
  leaves either the old or the new history. A row that is not valid JSON (the
  half-written last line of a killed run) is dropped too. Returns how many rows
  were dropped; a missing file is left missing.
  """
  if not os.path.exists(path):
    return 0
  with open(path) as f:
    lines = f.read().splitlines()
  kept = []
  for line in lines:
    if not line.strip():
      continue
    try:
      row = json.loads(line)
    except json.JSONDecodeError:
      continue
    if isinstance(row, dict) and isinstance(row.get("step"), (int, float)) and (row["step"] > step):
      continue
    kept.append(line)
  dropped = sum(1 for line in lines if line.strip()) - len(kept)
  if dropped:
    atomic_write.write_text(path, "".join(line + "\n" for line in kept))
  return dropped


# Console summary of eval metrics. The suffixes a researcher looks at first, most
# important first; a key matches when it ends in one after "/" or "_"
# ("zeroshot/image_accuracy", "retrieval/image_to_text/R@1").
_IMPORTANT_SUFFIXES = ("rsum", "accuracy", "R@1", "macro_f1", "R@5")
# Bookkeeping rather than a result: shown last.
_UNIMPORTANT_SUFFIXES = ("seconds",)


def _suffix_rank(key: str) -> int:
  """Where the key's ending is in _IMPORTANT_SUFFIXES; after them: other, bookkeeping."""
  for rank, suffix in enumerate(_IMPORTANT_SUFFIXES):
    if key == suffix or key.endswith(("/" + suffix, "_" + suffix)):
      return rank
  if key.rsplit("/", 1)[-1] in _UNIMPORTANT_SUFFIXES:
    return len(_IMPORTANT_SUFFIXES) + 1
  return len(_IMPORTANT_SUFFIXES)


def _choose_eval_keys(keys: list[str], max_items: int) -> set[str]:
  """The `max_items` most important keys, the best one of every group first.

  Every group (first path component) gets its best key before any group gets a
  second, so one evaluator with many metrics cannot hide the others. Keys
  deeper than the shallowest of their group (`classification/label/noise_image_0.5/
  accuracy` next to `classification/label/accuracy`) are variants, shown after
  the headline metrics of every group.
  """
  group_of = {k: k.split("/", 1)[0] for k in keys}
  bookkeeping = len(_IMPORTANT_SUFFIXES) + 1
  min_depth: dict[str, int] = {}
  for k in keys:
    if _suffix_rank(k) != bookkeeping:  # "retrieval/seconds" says nothing of depth
      g = group_of[k]
      min_depth[g] = min(min_depth.get(g, k.count("/")), k.count("/"))
  order = {k: i for i, k in enumerate(keys)}

  def importance(k):
    rank = _suffix_rank(k)
    depth = k.count("/") - min_depth.get(group_of[k], 0)
    return rank == bookkeeping, depth, rank, order[k]

  ranked = sorted(keys, key=importance)
  chosen, seen_groups = [], set()
  for k in ranked:
    if group_of[k] not in seen_groups:
      seen_groups.add(group_of[k])
      chosen.append(k)
  chosen = chosen[:max_items]
  for k in ranked:
    if len(chosen) >= max_items:
      break
    if k not in chosen:
      chosen.append(k)
  return set(chosen)


def format_eval_line(
  step: int, scalars: Mapping[str, float], *, max_items: int = 8, width: int = 120, prefix: str = ""
) -> str:
  """A readable console summary of many eval metrics; a pure function.

  Keys are grouped by their first path component (`retrieval/...`,
  `zeroshot/...`), at most `max_items` of them are shown (those ending in rsum,
  accuracy, R@1, macro_f1, R@5 first), and the rest are counted:

    eval [step 400] retrieval: image_text/rsum=2.1000 image_to_text/R@1=0.4100 |
        zeroshot: image_accuracy=0.8800 (+37 more in metrics_history.jsonl)

  One line when it fits in `width` characters, else one line per group. Groups
  and the keys within them keep the order of `scalars`.
  """
  keys = list(scalars)
  shown = _choose_eval_keys(keys, max_items)
  groups: dict[str, list[str]] = {}
  for k in keys:
    if k in shown:
      group, _, rest = k.partition("/")
      # A key without "/" (e.g. "loss") is its own group and shows its full name.
      groups.setdefault(group if rest else "", []).append(f"{rest or k}={_fmt(float(scalars[k]))}")
  parts = [f"{g}: {' '.join(items)}" if g else " ".join(items) for g, items in groups.items()]
  hidden = len(keys) - len(shown)
  tail = f" (+{hidden} more in {HISTORY_FILE})" if hidden else ""
  head = f"{prefix}[step {step}]"
  line = f"{head} {' | '.join(parts)}{tail}"
  if len(line) <= width or len(parts) <= 1:
    return line
  # Too long for one line: one group per line, indented under the step.
  return "\n".join([head] + [f"  {p}" for p in parts[:-1]] + [f"  {parts[-1]}{tail}"])


def write_json(path: str, payload: Mapping) -> None:
  """Atomic write, so a crash never leaves a half-written file behind."""
  if jax.process_index() != 0:
    return
  atomic_write.write_text(path, json.dumps(payload, indent=1, sort_keys=True))


def read_json(path: str) -> dict | None:
  """The JSON object `write_json` wrote at `path`, or None when there is none.

  None also for a file that is not a JSON object (written by something else),
  with a warning: callers use this to look for bookkeeping of an earlier run,
  which should not stop a new one.
  """
  try:
    with open(path) as f:
      payload = json.load(f)
  except FileNotFoundError:
    return None
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    logging.warning("%s is not valid JSON (%s); ignoring it.", path, e)
    return None
  if not isinstance(payload, dict):
    logging.warning("%s holds a %s, not a JSON object; ignoring it.", path, type(payload).__name__)
    return None
  return payload
