"""Run files written so that a crash or a full disk leaves the old file or the new
one, never a torn one: a temporary file beside the target, flushed to the disk,
then renamed over it (a rename within a directory is atomic on POSIX)."""

from __future__ import annotations

import os


def write_text(path: str, text: str) -> None:
  """Replaces the file at `path` with `text`. On an error (e.g. the disk is full)
  the old file is left as it was and the temporary file removed."""
  tmp = f"{path}.tmp{os.getpid()}"
  try:
    with open(tmp, "w", encoding="utf-8") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())  # the bytes are on the disk before the name points at them
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
