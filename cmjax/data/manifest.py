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


def read(path: str, skipped: list | None = None) -> list[dict]:
  """The rows of the manifest at `path` (format from its extension).

  A bad line (not JSON, not UTF-8, more cells than the header) raises
  `DataError` naming it; with a `skipped` list it is left out and described
  there instead ("FILE:LINE: why").
  """
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
  if raw.startswith(b"\xef\xbb\xbf"):
    raw = raw[3:]
  # Undecodable bytes become lone surrogates, found per line below.
  text = raw.decode("utf-8", errors="surrogateescape")
  name = os.path.basename(path)
  bad = []
  rows = _jsonl(text, name, bad) if FORMATS[ext] == "jsonl" else _csv(text, name, FORMATS[ext], bad)
  if bad and skipped is None:
    raise DataError(bad[0])
  if skipped is not None:
    skipped.extend(bad)
  if not rows:
    raise ValueError(f"manifest {path!r} has no rows")
  return rows


def _not_utf8(text: str) -> bool:
  return any("\udc80" <= ch <= "\udcff" for ch in text)


def _jsonl(text: str, name: str, bad: list) -> list[dict]:
  rows = []
  for line_no, line in enumerate(text.splitlines(), 1):
    if not line.strip():
      continue
    if _not_utf8(line):
      bad.append(f"{name}:{line_no}: not UTF-8 text")
      continue
    try:
      row = json.loads(line)
    except json.JSONDecodeError as e:
      bad.append(f"{name}:{line_no}: not a JSON object ({e.msg})")
      continue
    if not isinstance(row, dict):
      bad.append(f"{name}:{line_no}: expected a JSON object, got {type(row).__name__}")
      continue
    row["_row"] = f"{name}:{line_no}"
    rows.append(row)
  return rows


def _csv(text: str, name: str, kind: str, bad: list) -> list[dict]:
  reader = csv.DictReader(text.splitlines(), delimiter="\t" if kind == "tsv" else ",")
  rows = []
  for row in reader:
    line_no = reader.line_num
    if None in row:
      bad.append(f"{name}:{line_no}: more cells than the header's {len(reader.fieldnames)}")
      continue
    try:
      rows.append(dict(_cells(row, name, line_no), _row=f"{name}:{line_no}"))
    except DataError as e:
      bad.append(str(e))
  return rows


def _cells(row: dict, name: str, line_no: int) -> dict:
  out = {}
  for key, value in row.items():
    value = value if value is not None else ""
    if _not_utf8(value):
      raise DataError(f"{name}:{line_no}: column {key!r} is not UTF-8 text")
    if value.startswith("["):
      try:
        value = json.loads(value)
      except json.JSONDecodeError as e:
        raise DataError(f"{name}:{line_no}: column {key!r} is not a JSON list ({e.msg})") from None
    out[key] = value
  return out
