"""Verified checkpoints: checksums written after each save, checked on restore;
changed bytes, missing files and NaN states are named and skipped."""

import glob
import json
import logging
import os
import shutil

import flax
import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cmjax import checkpoint
from cmjax import checkpoint_integrity as integrity

DTYPES = [np.float32, np.int32, np.uint8, np.float16, jnp.bfloat16, np.bool_]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_fingerprint_numpy_equals_jax_and_sees_every_bit(dtype):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(5, 7)).astype(dtype) if dtype != np.bool_ else rng.random((5, 7)) > 0.5
  want = int(integrity.fingerprint(x, np))
  assert int(jax.jit(integrity.fingerprint)(jnp.asarray(x))) == want
  raw = np.ascontiguousarray(x).reshape(-1).view(np.uint8).copy()
  for _ in range(20):  # any one flipped bit changes it
    flipped = raw.copy()
    if dtype == np.bool_:
      i = rng.integers(raw.size)
      flipped[i] ^= 1
    else:
      i, bit = rng.integers(raw.size), rng.integers(8)
      flipped[i] ^= np.uint8(1 << bit)
    assert int(integrity.fingerprint(flipped.view(x.dtype).reshape(x.shape), np)) != want
  # Swapping two different values changes it too.
  swapped = np.array(x).reshape(-1)
  j = int(np.argmax(swapped != swapped[0]))
  swapped[[0, j]] = swapped[[j, 0]]
  assert int(integrity.fingerprint(swapped.reshape(x.shape), np)) != want


@flax.struct.dataclass
class _TrainState:
  """Shaped like the trainer's: a dataclass with a tuple of optimizer states (which
  a checkpoint read without the classes gives back as dicts and lists)."""

  params: dict
  opt_state: tuple
  step: jax.Array


def _state(scale=1.0):
  params = {"w": jnp.arange(4096.0).reshape(64, 64) * scale, "b": jnp.ones(4, jnp.bfloat16)}
  adam = optax.ScaleByAdamState(jnp.asarray(1, jnp.int32), params, params)
  return _TrainState(params, (adam, optax.EmptyState()), jnp.asarray(3, jnp.int32))


def _abstract(state):
  return jax.tree_util.tree_map(
    lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state
  )


def _data_iter():
  return iter(grain.MapDataset.range(100).to_iter_dataset())


def _save(workdir, steps, scale=lambda step: 1.0):
  ckpt = checkpoint.Checkpointer(str(workdir), every_steps=1, keep=10, run_config={"seed": 3})
  it = _data_iter()
  for step in steps:
    next(it)
    ckpt.save(step, _state(scale(step)), it, force=True)
  ckpt.close()


def _restore(workdir):
  ckpt = checkpoint.Checkpointer(str(workdir), every_steps=1, keep=10)
  it = _data_iter()
  try:
    state, step = ckpt.restore_latest(_abstract(_state()), it)
  finally:
    ckpt.close()
  return state, step, it


def test_every_step_gets_checksums_of_its_files_and_arrays(tmp_path):
  _save(tmp_path, [1, 2])
  manifest = integrity.read_manifest(str(tmp_path / "checkpoints" / "2"))
  files = manifest["files"]
  assert any(f.startswith("state/") for f in files)
  assert "data/process_0-of-1.json" in files  # the data iterator's position
  assert any(f.startswith("config/") for f in files)  # and the run config
  names = {"params/b", "params/w", "step", "opt_state/0/count"}
  names |= {f"opt_state/0/{m}/{p}" for m in ("mu", "nu") for p in "bw"}
  assert set(manifest["arrays"]) == names
  state, step, it = _restore(tmp_path)
  assert step == 2 and next(it) == 2  # the iterator resumes after 2 elements
  np.testing.assert_array_equal(state.params["w"], _state().params["w"])
  assert checkpoint.verify(str(tmp_path)) == {1: [], 2: []}


def _largest_state_file(tmp_path, step):
  files = glob.glob(
    str(tmp_path / "checkpoints" / str(step) / "state" / "**" / "*"), recursive=True
  )
  return max((f for f in files if os.path.isfile(f)), key=os.path.getsize)


def _flip(path, offset=-20):
  with open(path, "r+b") as f:
    f.seek(offset, os.SEEK_END)
    byte = f.read(1)
    f.seek(offset, os.SEEK_END)
    f.write(bytes([byte[0] ^ 0x10]))


def test_flipped_bytes_are_named_and_an_older_step_restored(tmp_path, caplog):
  _save(tmp_path, [1, 2], scale=lambda step: float(step))
  bad = _largest_state_file(tmp_path, 2)
  _flip(bad, -3000)  # inside the 64x64 array's bytes
  with caplog.at_level(logging.WARNING):
    state, step, _ = _restore(tmp_path)
  assert step == 1
  np.testing.assert_array_equal(state.params["w"], _state(1.0).params["w"])
  rel = os.path.relpath(bad, tmp_path / "checkpoints" / "2")
  assert f"step 2: {rel} changed since it was saved" in caplog.text
  report = checkpoint.verify(str(tmp_path))
  assert report[1] == [] and any(rel in p for p in report[2])
  # One of the three 64x64 arrays (parameters, Adam's two moments) is named:
  # by its fingerprint, or, where the flip broke its compressed block (the
  # arrays' order in the file varies between saves), by the read error.
  named = [p for p in report[2] if p.endswith("/w differs from the saved one (fingerprint)")]
  unreadable = [
    p
    for p in report[2]
    if "cannot be read" in p
    and any(f'"{n}/' in p for n in ("params.w", "opt_state.0.mu.w", "opt_state.0.nu.w"))
  ]
  assert (len(named) == 1 and not unreadable) or (unreadable and not named), report[2]
  if named:
    assert named[0].split()[1] in ("params/w", "opt_state/0/mu/w", "opt_state/0/nu/w")
  assert f"{named[0].split(' differs')[0]} differs" in caplog.text  # named when skipped too


@pytest.fixture(scope="module")
def two_steps(tmp_path_factory):
  """A workdir with verified steps 1 and 2 (copied by each test that damages it)."""
  workdir = tmp_path_factory.mktemp("two_steps")
  _save(workdir, [1, 2], scale=lambda step: float(step))
  return workdir


def _step_files(workdir, step):
  root = workdir / "checkpoints" / str(step)
  return sorted(
    os.path.relpath(f, root)
    for f in glob.glob(str(root / "**" / "*"), recursive=True)
    if os.path.isfile(f)
  )


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_every_kind_of_checkpoint_file_damaged_is_named_and_an_older_step_restored(
  two_steps, tmp_path, caplog, damage
):
  """Each file of step 2 in turn (array data, Orbax's index and metadata, the data
  position, the run config, the commit marker, the checksums themselves)."""
  files = _step_files(two_steps, 2)
  kinds = {f.split("/")[0] for f in files}
  assert {"state", "data", "config", integrity.MANIFEST} <= kinds, files
  for rel in files:
    workdir = tmp_path / rel.replace("/", "_")
    shutil.copytree(two_steps, workdir)
    path = workdir / "checkpoints" / "2" / rel
    size = os.path.getsize(path)
    if damage == "delete":
      os.remove(path)
    elif damage == "truncate":
      os.truncate(path, size // 2)
    elif size:
      _flip(path, -max(1, size // 2))
    else:
      continue  # nothing to flip in an empty marker file
    caplog.clear()
    with caplog.at_level(logging.WARNING):
      state, step, it = _restore(workdir)
    assert step == 1 and next(it) == 1, (damage, rel)
    np.testing.assert_array_equal(state.params["w"], _state(1.0).params["w"])
    named = rel if rel != integrity.MANIFEST else "checksum"
    assert "step 2" in caplog.text and (named in caplog.text or "no checksums" in caplog.text), (
      damage,
      rel,
      caplog.text[-500:],
    )
    assert checkpoint.verify(str(workdir))[2], (damage, rel)  # verify says so too


def test_the_data_iterator_position_is_verified(tmp_path, caplog):
  _save(tmp_path, [1, 2])
  path = tmp_path / "checkpoints" / "2" / "data" / "process_0-of-1.json"
  path.write_text(path.read_text().replace("2", "7"))
  with caplog.at_level(logging.WARNING):
    _, step, it = _restore(tmp_path)
  assert step == 1 and next(it) == 1
  assert "data/process_0-of-1.json changed since it was saved" in caplog.text


def test_a_deleted_file_or_missing_checksums_fall_back(tmp_path, caplog):
  _save(tmp_path, [1, 2, 3])
  os.remove(_largest_state_file(tmp_path, 3))
  os.remove(tmp_path / "checkpoints" / "2" / integrity.MANIFEST)  # killed before written
  with caplog.at_level(logging.WARNING):
    _, step, _ = _restore(tmp_path)
  assert step == 1
  assert "is missing" in caplog.text and "it has no checksums" in caplog.text


def test_no_step_that_verifies_stops_with_a_message(tmp_path):
  _save(tmp_path, [1])
  _flip(_largest_state_file(tmp_path, 1))
  with pytest.raises(checkpoint.CheckpointError, match=r"No checkpoint in .* can be restored"):
    _restore(tmp_path)
  assert checkpoint.main(["verify", str(tmp_path)]) == 1


def test_a_state_with_nan_is_never_restored(tmp_path, caplog):
  _save(tmp_path, [1, 2], scale=lambda step: np.nan if step == 2 else 1.0)
  manifest = integrity.read_manifest(str(tmp_path / "checkpoints" / "2"))
  assert integrity.non_finite(manifest["arrays"]) == [
    "params/w",
    "opt_state/0/mu/w",
    "opt_state/0/nu/w",
  ]
  with caplog.at_level(logging.WARNING):
    _, step, _ = _restore(tmp_path)
  assert (
    step == 1
    and "holds NaN or infinity (params/w, opt_state/0/mu/w, opt_state/0/nu/w)" in caplog.text
  )


def test_checkpoints_without_checksums_restore_as_before(tmp_path, caplog):
  _save(tmp_path, [1, 2])
  for m in glob.glob(str(tmp_path / "checkpoints" / "*" / integrity.MANIFEST)):
    os.remove(m)
  with caplog.at_level(logging.WARNING):
    _, step, _ = _restore(tmp_path)
  assert step == 2 and "have no checksums: not verified" in caplog.text


def test_verify_command_prints_each_step(tmp_path, capsys):
  _save(tmp_path, [1, 2])
  assert checkpoint.main(["verify", str(tmp_path)]) == 0
  assert capsys.readouterr().out.splitlines() == ["step 1: verified", "step 2: verified"]
  manifest = tmp_path / "checkpoints" / "1" / integrity.MANIFEST
  manifest.write_text(json.dumps({"files": {}}))
  assert checkpoint.main(["verify", str(tmp_path)]) == 1
  assert "step 1: BAD: its checksum file" in capsys.readouterr().out
