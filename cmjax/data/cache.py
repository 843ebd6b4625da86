"""Generate a procedural split once, in parallel, and read it back from disk.

Synthesising speech costs ~10 ms an example on one core, more than a small
model's train step spends on it, and every epoch would pay it again. So a
split is generated once by all cores into a folder of plain files keyed by a
hash of the generator's options, and then served by `CachedSource` at
memory-map speed. The folder appears atomically (written under a temporary
name, then renamed), so a crash never leaves a half-written cache behind.

Workers are separate `python -m cmjax.data.cache` processes, each writing one
contiguous range of examples (a "part"). Unlike multiprocessing's spawn, this
never re-imports the caller's main script, so a script without an
`if __name__ == "__main__":` guard or a notebook works the same.

Layout:
  meta.json                 number of examples and the parts' index ranges
  part-K/meta.json          the part's fields and how each is stored
  part-K/<field>.npy        fixed-shape numeric fields, stacked: `[n, ...]`
  part-K/<field>.bin        variable-length 1-D fields (speech), concatenated
  part-K/<field>.offsets.npy `[n + 1]` int64 offsets into the .bin values
  part-K/text.json          string and list-of-string fields, one row per example
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from typing import Any, Callable

import numpy as np
import tqdm

_VERSION = 5  # bump when the generator's output changes (3-5: question types, swap captions)
_RAGGED = ("speech",)  # 1-D fields whose length varies between examples


def default_cache_dir() -> str:
  return os.environ.get("CMJAX_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "cmjax"))


def cache_key(name: str, options: dict) -> str:
  blob = json.dumps({"name": name, "version": _VERSION, **options}, sort_keys=True, default=str)
  return f"{name}-{hashlib.sha1(blob.encode()).hexdigest()[:16]}"


def _is_text(value: Any) -> bool:
  return isinstance(value, str) or (
    isinstance(value, list) and all(isinstance(v, str) for v in value)
  )


def write_part(
  source: Any, start: int, stop: int, directory: str, progress_every: int = 16
) -> None:
  """Writes examples `start..stop-1` of `source` into `directory` (one part)."""
  os.makedirs(directory, exist_ok=True)
  n = stop - start
  kinds: dict[str, str] = {}
  arrays: dict[str, np.ndarray] = {}
  files: dict[str, Any] = {}
  dtypes: dict[str, str] = {}
  offsets: dict[str, list] = {}
  texts: list[dict] = []
  progress = os.path.join(directory, "progress")
  for i in range(n):
    rec = source[start + i]
    if not kinds:
      for key, value in rec.items():
        if key in _RAGGED:
          kinds[key] = "ragged"
          dtypes[key] = np.asarray(value).dtype.str
          files[key] = open(os.path.join(directory, f"{key}.bin"), "wb")
          offsets[key] = [0]
        elif _is_text(value):
          kinds[key] = "text"
        else:
          kinds[key] = "array"
          value = np.asarray(value)
          arrays[key] = np.lib.format.open_memmap(
            os.path.join(directory, f"{key}.npy"),
            mode="w+",
            dtype=value.dtype,
            shape=(n,) + value.shape,
          )
    row = {}
    for key, kind in kinds.items():
      if kind == "array":
        arrays[key][i] = rec[key]
      elif kind == "ragged":
        values = np.asarray(rec[key], dtypes[key])
        files[key].write(values.tobytes())
        offsets[key].append(offsets[key][-1] + len(values))
      else:
        row[key] = rec[key]
    texts.append(row)
    if (i + 1) % progress_every == 0:
      with open(progress, "w") as f:
        f.write(str(i + 1))
  for a in arrays.values():
    a.flush()
  for key, f in files.items():
    f.close()
    np.save(os.path.join(directory, f"{key}.offsets.npy"), np.asarray(offsets[key], np.int64))
  with open(os.path.join(directory, "text.json"), "w") as f:
    json.dump(texts, f)
  with open(os.path.join(directory, "meta.json"), "w") as f:
    json.dump({"num_examples": n, "kinds": kinds, "ragged_dtypes": dtypes}, f)
  with open(progress, "w") as f:
    f.write(str(n))


def _read_progress(path: str) -> int:
  try:
    with open(path) as f:
      return int(f.read() or 0)
  except (OSError, ValueError):
    return 0


def materialize(
  factory: Callable[[], Any],
  directory: str,
  *,
  num_workers: int | None = None,
  description: str = "",
) -> str:
  """Writes every example of `factory()` (a random-access source) into `directory`.

  `factory` must be picklable (e.g. a `functools.partial` of the source class);
  each worker process builds its own source from it. Does nothing if the cache
  already exists. Returns `directory`.
  """
  if os.path.exists(os.path.join(directory, "meta.json")):
    return directory
  n = len(factory())
  num_workers = max(1, min(num_workers or os.cpu_count() or 1, n))
  bounds = np.linspace(0, n, num_workers + 1).round().astype(int)
  parts = [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
  tmp = f"{directory}.tmp-{os.getpid()}"
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  with open(os.path.join(tmp, "factory.pkl"), "wb") as f:
    pickle.dump(factory, f)

  bar = tqdm.tqdm(
    total=n,
    desc=description or os.path.basename(directory),
    unit="ex",
    file=sys.stderr,
    mininterval=2.0,
  )
  package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
  procs = []
  try:
    for k, (a, b) in enumerate(parts):
      procs.append(
        subprocess.Popen(
          [sys.executable, "-m", "cmjax.data.cache", tmp, str(k), str(a), str(b)],
          env=env,
          stdout=subprocess.DEVNULL,
          stderr=subprocess.PIPE,
          text=True,
        )
      )
    while True:
      done = sum(
        _read_progress(os.path.join(tmp, f"part-{k}", "progress")) for k in range(len(parts))
      )
      bar.update(done - bar.n)
      if all(p.poll() is not None for p in procs):
        break
      time.sleep(0.5)
    failed = [(k, p) for k, p in enumerate(procs) if p.returncode != 0]
    if failed:
      k, p = failed[0]
      raise RuntimeError(
        f"Generating {directory} failed in worker {k} "
        f"(exit {p.returncode}):\n{p.stderr.read()[-3000:]}"
      )
  finally:
    bar.close()
    for p in procs:
      if p.poll() is None:
        p.kill()
  with open(os.path.join(tmp, "meta.json"), "w") as f:
    json.dump({"num_examples": n, "parts": parts}, f)
  try:
    os.rename(tmp, directory)
  except OSError:  # another process finished the same cache first
    shutil.rmtree(tmp, ignore_errors=True)
  return directory


class _Part:
  """One contiguous range of examples, memory-mapped."""

  def __init__(self, directory: str):
    with open(os.path.join(directory, "meta.json")) as f:
      meta = json.load(f)
    self.arrays, self.flat, self.offsets = {}, {}, {}
    for key, kind in meta["kinds"].items():
      if kind == "array":
        self.arrays[key] = np.load(os.path.join(directory, f"{key}.npy"), mmap_mode="r")
      elif kind == "ragged":
        path = os.path.join(directory, f"{key}.bin")
        dtype = np.dtype(meta["ragged_dtypes"][key])
        # np.memmap refuses empty files (e.g. speech switched off).
        self.flat[key] = (
          np.memmap(path, dtype=dtype, mode="r") if os.path.getsize(path) else np.zeros((0,), dtype)
        )
        self.offsets[key] = np.load(os.path.join(directory, f"{key}.offsets.npy"))
    with open(os.path.join(directory, "text.json")) as f:
      self.texts = json.load(f)

  def get(self, i: int) -> dict:
    out = {k: np.array(a[i]) if a.ndim > 1 else a[i] for k, a in self.arrays.items()}
    for key, flat in self.flat.items():
      out[key] = np.array(flat[self.offsets[key][i] : self.offsets[key][i + 1]])
    out.update(self.texts[i])
    return out


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
    self._starts = [a for a, _ in meta["parts"]]
    self._parts = [_Part(os.path.join(directory, f"part-{k}")) for k in range(len(meta["parts"]))]

  def __getstate__(self):
    return {"directory": self.directory}

  def __setstate__(self, state):
    self.__init__(state["directory"])

  def __len__(self) -> int:
    return self._n

  def column(self, key: str) -> np.ndarray:
    """A fixed-shape field of every example, `[n, ...]`, without reading the others."""
    if key not in self._parts[0].arrays:
      raise KeyError(
        f"{key!r} is not a fixed-shape field of {self.directory}; it has "
        f"{sorted(self._parts[0].arrays)}"
      )
    return np.concatenate([np.asarray(p.arrays[key]) for p in self._parts])

  def __repr__(self) -> str:
    return f"CachedSource({self.directory!r}, {self._n} examples)"

  def __getitem__(self, index: int) -> dict:
    index = int(index)
    if not -self._n <= index < self._n:
      raise IndexError(f"index {index} out of range for {self._n} examples")
    index %= self._n
    k = bisect.bisect_right(self._starts, index) - 1
    return self._parts[k].get(index - self._starts[k])


def _worker_main(argv: list[str]) -> None:
  tmp, k, start, stop = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
  with open(os.path.join(tmp, "factory.pkl"), "rb") as f:
    factory = pickle.load(f)
  write_part(factory(), start, stop, os.path.join(tmp, f"part-{k}"))


if __name__ == "__main__":
  _worker_main(sys.argv[1:])
