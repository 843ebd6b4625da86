"""Checksums that tell a checkpoint as saved from one that changed on disk.

Orbax checks its own index, not the array data: a few flipped bytes in a
checkpoint restore without an error. Each saved step therefore gets a
manifest, `<step>/cmjax_checksums.json`, written atomically once the step has
committed:

  files     every file of the step (the train state's array data and index,
            the data iterator's position, the run config): size and CRC-32
  arrays    per array of the train state, a fingerprint of its value
            (`fingerprint`), and whether every value is finite

A restore checks the files before reading them and the arrays after, so a
mismatch names the step and the file or the array. Fingerprints are computed
from the device arrays inside one jitted call at save time (the result is a
few bytes per array; the training thread does not wait for it) and are
independent of the sharding, so a checkpoint saved on 8 devices verifies on 1.
"""

from __future__ import annotations

import json
import os
import zlib

import jax
import jax.numpy as jnp
import numpy as np

from cmjax import atomic_write

MANIFEST = "cmjax_checksums.json"
_CHUNK = 1 << 22
# An odd multiplier: position-weighted words, so a changed or moved value changes the sum.
_GOLDEN = 2654435761


def _words(x, xp):
  """The bits of `x` as uint32 words `[n]` (16- and 8-bit values widened)."""
  if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  if x.dtype == bool or x.dtype == np.bool_:
    return x.reshape(-1).astype(xp.uint32)
  size = x.dtype.itemsize
  if size == 4:
    return _bitcast(x, xp.uint32, xp).reshape(-1)
  if size in (1, 2):
    narrow = xp.uint8 if size == 1 else xp.uint16
    return _bitcast(x, narrow, xp).reshape(-1).astype(xp.uint32)
  if size == 8:
    return _bitcast(x, xp.uint32, xp).reshape(-1)
  raise ValueError(f"cannot fingerprint arrays of dtype {x.dtype}")


def _bitcast(x, dtype, xp):
  if xp is np:
    return np.ascontiguousarray(x).view(dtype)
  return jax.lax.bitcast_convert_type(x, dtype)


def fingerprint(x, xp=jnp):
  """uint32 sum over the words w_i of `x` of w_i * (2 * i * 2654435761 + 1), mod 2**32.

  Every weight is odd, so flipping any one bit changes the result; a sum of
  integers modulo 2**32 is the same however the array is split across devices.
  `xp` is `jax.numpy` (inside jit) or `numpy` (for arrays read back from disk);
  both give the same number.
  """
  w = _words(xp.asarray(x), xp)
  i = xp.arange(w.shape[0], dtype=xp.uint32)
  weights = i * xp.uint32(2 * _GOLDEN % 2**32) + xp.uint32(1)
  if xp is np:
    with np.errstate(over="ignore"):
      return np.uint32(np.sum(w * weights, dtype=np.uint32))
  return jnp.sum(w * weights, dtype=jnp.uint32)


def _finite(x, xp):
  if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
    return xp.asarray(True)
  if xp.issubdtype(x.dtype, xp.inexact):
    return xp.all(xp.isfinite(x))
  return xp.asarray(True)


def _paths(tree) -> list[str]:
  """'params/text_encoder/token_embed/embedding', 'opt_state/1/0/mu/...': the same
  names for the train state's dataclasses and tuples as for the nested dicts and
  lists that a checkpoint reads back as without them (`verify`)."""
  return [
    "/".join(_key_name(k) for k in path)
    for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]
  ]


def _key_name(key) -> str:
  for attr in ("name", "key", "idx"):  # GetAttrKey, DictKey / FlattenedIndexKey, SequenceKey
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


@jax.jit
def _device_summary(tree):
  leaves = jax.tree_util.tree_leaves(tree)
  return [fingerprint(x) for x in leaves], [_finite(x, jnp) for x in leaves]


def array_summary(tree) -> dict:
  """`{path: [fingerprint, finite]}` of a tree of jax arrays (a jitted pass over
  them on their devices; returns small device arrays still being computed)."""
  return {"paths": _paths(tree), "values": _device_summary(tree)}


def fetch_summary(summary: dict) -> dict[str, list]:
  """`array_summary`'s result brought to the host: `{path: [fingerprint, finite]}`."""
  prints, finite = jax.device_get(summary["values"])
  return {p: [int(f), bool(ok)] for p, f, ok in zip(summary["paths"], prints, finite, strict=True)}


def host_summary(tree) -> dict[str, list]:
  """`{path: [fingerprint, finite]}` of a tree of numpy arrays (read back from disk)."""
  leaves = jax.tree_util.tree_leaves(tree)
  return {
    p: [int(fingerprint(np.asarray(x), np)), bool(_finite(np.asarray(x), np))]
    for p, x in zip(_paths(tree), leaves, strict=True)
  }


def file_checksums(step_dir: str) -> dict[str, list[int]]:
  """`{relative path: [size, crc32]}` of every file under `step_dir` (but the manifest)."""
  out = {}
  for root, _, names in os.walk(step_dir):
    for name in sorted(names):
      path = os.path.join(root, name)
      rel = os.path.relpath(path, step_dir)
      if rel.startswith(MANIFEST):  # the manifest, or its temporary file
        continue
      crc, size = 0, 0
      with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
          crc, size = zlib.crc32(chunk, crc), size + len(chunk)
      out[rel] = [size, crc]
  return dict(sorted(out.items()))


def write_manifest(step_dir: str, arrays: dict[str, list]) -> None:
  """Checks the files of a committed step and writes the manifest atomically."""
  payload = {"version": 1, "files": file_checksums(step_dir), "arrays": arrays}
  atomic_write.write_text(os.path.join(step_dir, MANIFEST), json.dumps(payload))


def read_manifest(step_dir: str) -> dict | None:
  """The step's manifest; None if it has none; a `ValueError` if it is unreadable."""
  path = os.path.join(step_dir, MANIFEST)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      manifest = json.load(f)
    manifest["files"], manifest["arrays"]  # pylint: disable=pointless-statement
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise ValueError(f"its checksum file {MANIFEST} is unreadable ({e})") from None
  return manifest


def check_files(step_dir: str, manifest: dict) -> list[str]:
  """What differs between the step's files and its manifest (empty: all match)."""
  now = file_checksums(step_dir)
  problems = []
  for rel, (size, crc) in manifest["files"].items():
    if rel not in now:
      problems.append(f"{rel} is missing")
    elif now[rel][0] != size:
      problems.append(f"{rel} has {now[rel][0]} bytes, {size} when saved")
    elif now[rel][1] != crc:
      problems.append(f"{rel} changed since it was saved (CRC-32 differs)")
  problems += [
    f"{rel} was not in the saved step" for rel in sorted(set(now) - set(manifest["files"]))
  ]
  return problems


def check_arrays(saved: dict[str, list], restored: dict[str, list]) -> list[str]:
  """Arrays whose restored values differ from those saved."""
  problems = []
  for path, (want, _) in saved.items():
    if path not in restored:
      problems.append(f"array {path} is missing")
    elif restored[path][0] != want:
      problems.append(f"array {path} differs from the saved one (fingerprint)")
  return problems


def non_finite(arrays: dict[str, list]) -> list[str]:
  """Arrays that held NaN or infinity when saved."""
  return [p for p, (_, ok) in arrays.items() if not ok]
