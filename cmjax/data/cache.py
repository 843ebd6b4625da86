"""Generate a procedural split once, in parallel, and read it back from disk.

Synthesising speech costs ~10 ms an example on one core, more than a small
model's train step spends on it, and every epoch would pay it again. So a
split is generated once by all cores into a folder of plain files keyed by a
hash of the generator's options, and then served by `CachedSource` at
memory-map speed. The folder appears atomically (written under a temporary
name, then renamed), so a crash never leaves a half-written cache behind.

Layout of a cache folder:
  meta.json            number of examples, the fields and how each is stored
  <field>.npy          fixed-shape numeric fields, stacked: `[n, ...]`
  <field>.bin          variable-length 1-D fields (speech), concatenated raw values
  <field>.offsets.npy  `[n + 1]` int64 start offsets into the flat array
  text.json            string and list-of-string fields, one row per example
"""

from __future__ import annotations

import functools
import hashlib
import json
import multiprocessing
import os
import shutil
import sys
from typing import Any, Callable

import numpy as np
import tqdm

_VERSION = 1  # bump when the generator's output changes
_RAGGED = ("speech",)  # 1-D fields whose length varies between examples


def default_cache_dir() -> str:
  return os.environ.get("CMJAX_CACHE_DIR",
                        os.path.join(os.path.expanduser("~"), ".cache", "cmjax"))


def cache_key(name: str, options: dict) -> str:
  blob = json.dumps({"name": name, "version": _VERSION, **options}, sort_keys=True,
                    default=str)
  return f"{name}-{hashlib.sha1(blob.encode()).hexdigest()[:16]}"


def _field_kind(value: Any) -> str:
  if isinstance(value, str) or (isinstance(value, list) and
                                all(isinstance(v, str) for v in value)):
    return "text"
  return "array"


def _generate_chunk(factory: Callable[[], Any], indices: range) -> list[dict]:
  source = _worker_source(factory)
  return [source[i] for i in indices]


@functools.lru_cache(maxsize=1)
def _worker_source(factory):
  return factory()


def materialize(factory: Callable[[], Any], directory: str, *,
                num_workers: int | None = None, chunk: int = 32,
                description: str = "") -> str:
  """Writes every example of `factory()` (a random-access source) into `directory`.

  `factory` must be picklable (e.g. a `functools.partial` of the source class):
  each worker process builds its own source. Returns `directory`. Does nothing
  if the folder already exists.
  """
  if os.path.exists(os.path.join(directory, "meta.json")):
    return directory
  n = len(factory())
  num_workers = num_workers or os.cpu_count() or 1
  tmp = f"{directory}.tmp-{os.getpid()}"
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  chunks = [range(s, min(s + chunk, n)) for s in range(0, n, chunk)]
  arrays: dict[str, np.ndarray] = {}
  ragged: dict[str, Any] = {}  # open binary files, appended to in order
  offsets: dict[str, list] = {}
  texts: list[dict] = []
  kinds: dict[str, str] = {}
  ragged_dtypes: dict[str, str] = {}
  ctx = multiprocessing.get_context("spawn")  # fork is unsafe once jax has threads
  bar = tqdm.tqdm(total=n, desc=description or f"generating {os.path.basename(directory)}",
                  unit="ex", file=sys.stderr, mininterval=2.0)
  pool = ctx.Pool(num_workers) if num_workers > 1 else None
  try:
    results = (pool.imap(functools.partial(_generate_chunk, factory), chunks)
               if pool else (_generate_chunk(factory, c) for c in chunks))
    i = 0
    for records in results:
      for rec in records:
        if not kinds:
          for key, value in rec.items():
            if key in _RAGGED:
              kinds[key] = "ragged"
              ragged_dtypes[key] = np.asarray(value).dtype.str
              ragged[key] = open(os.path.join(tmp, f"{key}.bin"), "wb")
              offsets[key] = [0]
            elif _field_kind(value) == "text":
              kinds[key] = "text"
            else:
              kinds[key] = "array"
              value = np.asarray(value)
              arrays[key] = np.lib.format.open_memmap(
                  os.path.join(tmp, f"{key}.npy"), mode="w+", dtype=value.dtype,
                  shape=(n,) + value.shape)
        row = {}
        for key, kind in kinds.items():
          if kind == "array":
            arrays[key][i] = rec[key]
          elif kind == "ragged":
            ragged[key].write(np.asarray(rec[key], ragged_dtypes[key]).tobytes())
            offsets[key].append(offsets[key][-1] + len(rec[key]))
          else:
            row[key] = rec[key]
        texts.append(row)
        i += 1
      bar.update(len(records))
  finally:
    bar.close()
    if pool:
      pool.terminate()
  for a in arrays.values():
    a.flush()
  for key in ragged:
    ragged[key].close()
    np.save(os.path.join(tmp, f"{key}.offsets.npy"), np.asarray(offsets[key], np.int64))
  with open(os.path.join(tmp, "text.json"), "w") as f:
    json.dump(texts, f)
  with open(os.path.join(tmp, "meta.json"), "w") as f:
    json.dump({"num_examples": n, "kinds": kinds, "ragged_dtypes": ragged_dtypes}, f)
  try:
    os.rename(tmp, directory)
  except OSError:  # another process finished the same cache first
    shutil.rmtree(tmp, ignore_errors=True)
  return directory


class CachedSource:
  """Random-access source over a folder written by `materialize`.

  Returns the same records as the generator did. Pickles as its path, so grain
  worker processes reopen the memory maps instead of copying them.
  """

  def __init__(self, directory: str):
    self.directory = directory
    with open(os.path.join(directory, "meta.json")) as f:
      meta = json.load(f)
    self._n = meta["num_examples"]
    self._kinds = meta["kinds"]
    self._ragged_dtypes = meta.get("ragged_dtypes", {})
    self._open()

  def _open(self):
    d = self.directory
    self._arrays, self._flat, self._offsets = {}, {}, {}
    for key, kind in self._kinds.items():
      if kind == "array":
        self._arrays[key] = np.load(os.path.join(d, f"{key}.npy"), mmap_mode="r")
      elif kind == "ragged":
        path = os.path.join(d, f"{key}.bin")
        dtype = np.dtype(self._ragged_dtypes[key])
        # np.memmap refuses empty files (e.g. speech switched off).
        self._flat[key] = (np.memmap(path, dtype=dtype, mode="r")
                           if os.path.getsize(path) else np.zeros((0,), dtype))
        self._offsets[key] = np.load(os.path.join(d, f"{key}.offsets.npy"))
    with open(os.path.join(d, "text.json")) as f:
      self._texts = json.load(f)

  def __getstate__(self):
    return {"directory": self.directory}

  def __setstate__(self, state):
    self.__init__(state["directory"])

  def __len__(self) -> int:
    return self._n

  def __repr__(self) -> str:
    return f"CachedSource({self.directory!r}, {self._n} examples)"

  def __getitem__(self, index: int) -> dict:
    index = int(index)
    if not -self._n <= index < self._n:
      raise IndexError(f"index {index} out of range for {self._n} examples")
    index %= self._n
    out = {k: np.array(a[index]) if a.ndim > 1 else a[index]
           for k, a in self._arrays.items()}
    for key, flat in self._flat.items():
      lo, hi = self._offsets[key][index], self._offsets[key][index + 1]
      out[key] = np.array(flat[lo:hi])
    out.update(self._texts[index])
    return out
