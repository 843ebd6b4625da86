"""Manifests: one row per example, as JSON lines or CSV.

A JSONL manifest holds one JSON object per line; a CSV (or TSV) manifest has a
header row. CSV cells are strings, except that a cell starting with `[` is read
as a JSON list (several captions, or several labels). Every row gets `_row`,
"FILE:LINE", which error messages name.
"""

from __future__ import annotations

import csv
import json
import os

from cmjax.data.decode import DataError

FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv"}


def read(path: str) -> list[dict]:
  """The rows of the manifest at `path` (format from its extension)."""
  ext = os.path.splitext(path)[1].lower()
  if ext not in FORMATS:
    raise ValueError(
      f"manifest {path!r}: unknown format {ext!r}; expected one of {sorted(FORMATS)}"
    )
  try:
    with open(path, "rb") as f:
      raw = f.read()
  except OSError as e:
    raise ValueError(f"cannot read manifest {path!r}: {e.strerror or e}") from None
  try:
    text = raw.decode("utf-8-sig")
  except UnicodeDecodeError as e:
    line = raw[: e.start].count(b"\n") + 1
    raise DataError(f"{path}:{line}: not UTF-8 text ({e.reason})") from None
  name = os.path.basename(path)
  rows = _jsonl(text, name) if FORMATS[ext] == "jsonl" else _csv(text, name, FORMATS[ext])
  if not rows:
    raise ValueError(f"manifest {path!r} has no rows")
  return rows


def _jsonl(text: str, name: str) -> list[dict]:
  rows = []
  for line_no, line in enumerate(text.splitlines(), 1):
    if not line.strip():
      continue
    try:
      row = json.loads(line)
    except json.JSONDecodeError as e:
      raise DataError(f"{name}:{line_no}: not a JSON object ({e.msg})") from None
    if not isinstance(row, dict):
      raise DataError(f"{name}:{line_no}: expected a JSON object, got {type(row).__name__}")
    row["_row"] = f"{name}:{line_no}"
    rows.append(row)
  return rows


def _csv(text: str, name: str, kind: str) -> list[dict]:
  reader = csv.DictReader(text.splitlines(), delimiter="\t" if kind == "tsv" else ",")
  rows = []
  for row in reader:
    line_no = reader.line_num
    if None in row:
      raise DataError(f"{name}:{line_no}: more cells than the header's {len(reader.fieldnames)}")
    out = {}
    for key, value in row.items():
      value = value if value is not None else ""
      if value.startswith("["):
        try:
          value = json.loads(value)
        except json.JSONDecodeError as e:
          raise DataError(
            f"{name}:{line_no}: column {key!r} is not a JSON list ({e.msg})"
          ) from None
      out[key] = value
    out["_row"] = f"{name}:{line_no}"
    rows.append(out)
  return rows
