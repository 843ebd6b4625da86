"""Orbax checkpointing of the train state together with the data iterator state.

One `CheckpointManager` under `workdir/checkpoints` with two items per step:
`state` (params, optimizer state, step; saved asynchronously) and `data` (the
grain iterator position, a small JSON file). A run restarted in the same workdir
restores the newest step that restores cleanly; a step folder that is empty or
unreadable (a crash at the wrong moment) is skipped with a warning rather than
ending the run.

Every step is verified: once it has committed, a background thread writes its
checksums (`cmjax/checkpoint_integrity.py`), and a restore skips, naming the
file or array, any step whose bytes or values changed since, or that holds
NaN. `python -m cmjax.checkpoint verify WORKDIR` checks every step.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import re
import sys
import threading
import time
from typing import Any

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from cmjax import atomic_write
from cmjax import checkpoint_integrity as integrity

# Written next to the checkpoints: what model the checkpoints belong to.
_SIGNATURE_FILE = "model_signature.json"


class CheckpointError(RuntimeError):
  """No checkpoint of the workdir can be trusted."""


class SaveError(RuntimeError):
  """A checkpoint could not be written (a full disk, a workdir no longer writable)."""


class Checkpointer:
  """Saves every `every_steps` steps and keeps the newest `keep` checkpoints."""

  def __init__(
    self,
    workdir: str,
    *,
    every_steps: int,
    keep: int,
    async_save: bool = True,
    commit_timeout_s: float = 3600.0,
    run_config: dict | None = None,
  ):
    """`run_config` (JSON-able) is saved with every step, and so verified with it."""
    self.directory = epath.Path(workdir) / "checkpoints"
    self.run_config = run_config
    self.commit_timeout_s = commit_timeout_s
    # One thread writes each step's checksums once the step has committed.
    self._checksummer = concurrent.futures.ThreadPoolExecutor(1, "cmjax-checksums")
    self._pending: list[concurrent.futures.Future] = []
    # Set once Orbax has finished every save: a step not committed by then never will.
    self._saves_done = threading.Event()
    options = ocp.CheckpointManagerOptions(
      save_interval_steps=max(1, int(every_steps)),
      max_to_keep=max(1, int(keep)),
      enable_async_checkpointing=async_save,
      create=True,
      # A save that failed (full disk) leaves a temporary folder; the next run
      # removes it, giving the space back.
      cleanup_tmp_directories=True,
    )
    self.manager = ocp.CheckpointManager(
      self.directory, options=options, item_names=("state", "data", "config")
    )
    # Kept in memory: save() runs every step and must not list the directory.
    self._saved_steps = set(self.manager.all_steps())

  # ----- model signature: refuse to resume a different model -----
  def check_signature(self, signature: dict) -> None:
    """Stops with a clear error if the workdir holds checkpoints of another model.

    `signature` is a JSON-able description of what must match for a restore
    (model config, parameter shapes).
    """
    # As it reads back from JSON (tuples become lists), so equal means equal.
    signature = json.loads(json.dumps(signature, default=str))
    path = self.directory / _SIGNATURE_FILE
    if path.exists() and self.manager.latest_step() is not None:
      saved = json.loads(path.read_text())
      if saved != signature:
        diff = _first_difference(saved, signature)
        raise ValueError(
          f"The workdir {self.directory.parent} holds checkpoints of a different "
          f"model ({diff}). Use a new --workdir, or delete {self.directory} to "
          "start over."
        )
    if jax.process_index() == 0:
      atomic_write.write_text(os.fspath(path), json.dumps(signature, indent=1, sort_keys=True))

  def save(self, step: int, state: Any, data_iter: Any, *, force: bool = False) -> bool:
    """Saves if `step` is due (or `force`) and not saved already; True if it saved."""
    if step in self._saved_steps:
      return False
    items = dict(
      state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(data_iter)
    )
    if self.run_config is not None:
      items["config"] = ocp.args.JsonSave(self.run_config)
    # Orbax reports a failed asynchronous save at the next save or wait.
    saved = self._orbax(self.manager.save, step, args=ocp.args.Composite(**items), force=force)
    if saved:
      self._saved_steps.add(step)
      summary = integrity.array_summary(state)  # every process: a global computation
      self._pending.append(self._checksummer.submit(self._write_checksums, step, summary))
    return saved

  def _write_checksums(self, step: int, summary: dict) -> None:
    arrays = integrity.fetch_summary(summary)
    if jax.process_index() != 0:
      return
    step_dir = os.fspath(self.directory / str(step))
    deadline = time.time() + self.commit_timeout_s
    committed = os.path.join(step_dir, "commit_success.txt")
    while not os.path.exists(committed):
      if self._saves_done.is_set() or time.time() > deadline:
        if not os.path.exists(committed):
          logging.warning("Checkpoint at step %d did not commit; no checksums written.", step)
          return
      time.sleep(0.05)
    try:
      integrity.write_manifest(step_dir, arrays)
    except OSError as e:  # deleted by max_to_keep meanwhile, or the disk failed
      logging.warning("Could not write the checksums of step %d: %s", step, e)
      return
    bad = integrity.non_finite(arrays)
    if bad:
      logging.warning(
        "The checkpoint at step %d holds NaN or infinity (%s); a rerun will not restore it.",
        step,
        ", ".join(bad[:3]),
      )

  def wait_for_checksums(self) -> None:
    """Blocks until every saved step has its checksums (call after Orbax's wait)."""
    self._saves_done.set()
    try:
      for job in self._pending:
        job.result()
    finally:
      self._pending = [j for j in self._pending if not j.done()]
      self._saves_done.clear()

  def _orbax(self, call, *args, **kwargs):
    """`call(*args, **kwargs)` of the manager; a save that failed becomes one
    `SaveError` saying what failed and which checkpoint is intact."""
    try:
      return call(*args, **kwargs)
    except Exception as e:  # pylint: disable=broad-except  # Orbax raises many kinds
      self.wait_for_checksums()  # the checksum thread stops waiting for that commit
      reason = _write_failure(e)
      newest = self._newest_verified_on_disk()
      kept = (
        f"The checkpoints before it are intact; the newest verified is step {newest}"
        if newest is not None
        else "No earlier checkpoint was verified"
      )
      raise SaveError(
        f"Could not write a checkpoint in {self.directory} ({reason}): is the disk full, or "
        f"the workdir no longer writable? {kept} (`python -m cmjax.checkpoint verify "
        f"{self.directory.parent}` checks them). Free space and rerun the same command "
        "to resume."
      ) from e

  def newest_verified(self) -> int | None:
    """The newest step with checksums and finite values (not re-reading its files)."""
    self._orbax(self.manager.wait_until_finished)  # a save in flight commits first
    self.wait_for_checksums()
    return self._newest_verified_on_disk()

  def _newest_verified_on_disk(self) -> int | None:
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        manifest = integrity.read_manifest(os.fspath(self.directory / str(step)))
      except ValueError:
        continue
      if manifest is not None and not integrity.non_finite(manifest["arrays"]):
        return step
    return None

  def restore_latest(self, abstract_state: Any, data_iter: Any):
    """Returns `(state, step)` of the newest readable checkpoint, or `(None, None)`.

    `abstract_state` is a tree of `jax.ShapeDtypeStruct`s with shardings, so the
    arrays come back laid out for the current mesh (which may differ from the
    one they were saved from). `data_iter` is restored in place.
    """
    steps = sorted(self.manager.all_steps(), reverse=True)
    manifests, rejected = {}, []
    for step in steps:
      try:
        manifests[step] = integrity.read_manifest(os.fspath(self.directory / str(step)))
      except ValueError as e:
        manifests[step] = e
    # Checkpoints written before checksums existed are restored as they are.
    verified = any(m is not None for m in manifests.values())
    if steps and not verified:
      logging.warning("The checkpoints in %s have no checksums: not verified.", self.directory)
    for step in steps:
      problems = self._check_before_restore(step, manifests[step], verified)
      if not problems:
        state, problems = self._restore_and_check(step, abstract_state, data_iter, manifests[step])
        if not problems:
          return state, step
      rejected.append(f"step {step}: {'; '.join(problems)}")
      logging.warning("Checkpoint at step %d skipped: %s. Trying an older one.", step, rejected[-1])
    if rejected:
      raise CheckpointError(
        f"No checkpoint in {self.directory} can be restored: {' | '.join(rejected)}. "
        f"`python -m cmjax.checkpoint verify {self.directory.parent}` lists them; move "
        "the bad steps away (or use a new --workdir) to go on."
      )
    return None, None

  def _check_before_restore(self, step: int, manifest, verified: bool) -> list[str]:
    if isinstance(manifest, ValueError):
      return [str(manifest)]
    if manifest is None:
      return ["it has no checksums (the run stopped before they were written)"] if verified else []
    bad = integrity.non_finite(manifest["arrays"])
    if bad:
      return [f"it holds NaN or infinity ({', '.join(bad[:3])})"]
    problems = integrity.check_files(os.fspath(self.directory / str(step)), manifest)
    if problems:  # which arrays that touches, read on the host (best effort)
      problems += _check_arrays_on_host(os.fspath(self.directory / str(step)), manifest)
    return problems

  def _restore_and_check(self, step: int, abstract_state, data_iter, manifest):
    try:
      restored = self.manager.restore(
        step,
        args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state),
          data=grain.checkpoint.CheckpointRestore(data_iter),
        ),
      )
    except Exception as e:  # pylint: disable=broad-except
      return None, [f"it could not be restored ({type(e).__name__}: {str(e)[:200]})"]
    if manifest is None:
      return restored["state"], []
    values = integrity.fetch_summary(integrity.array_summary(restored["state"]))
    return restored["state"], integrity.check_arrays(manifest["arrays"], values)

  def restore_state(self, abstract_state: Any, step: int | None = None):
    """The train state alone (no data iterator), at `step` or the newest step."""
    step = self.manager.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"No checkpoint in {self.directory}.")
    restored = self.manager.restore(
      step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))
    )
    return restored["state"], step

  def wait(self) -> None:
    self._orbax(self.manager.wait_until_finished)
    self.wait_for_checksums()

  def close(self) -> None:
    self._orbax(self.manager.wait_until_finished)
    self.wait_for_checksums()
    self._checksummer.shutdown()
    self.manager.close()


def _write_failure(error: Exception) -> str:
  """'File too large writing /w/checkpoints/6.orbax-checkpoint-tmp/...': the
  operating system's reason and the file, from an OSError or tensorstore's text."""
  text = str(error)
  code = re.search(r"os_error_code='?(\d+)", text)
  where = re.search(r'writing (?:local )?file "([^"]+)"', text)
  if code:
    return os.strerror(int(code.group(1))) + (f" writing {where.group(1)}" if where else "")
  if isinstance(error, OSError) and error.strerror:
    return f"{error.strerror}" + (f" writing {error.filename}" if error.filename else "")
  first = text.strip().splitlines()[0] if text.strip() else ""
  return f"{type(error).__name__}: {first[:200]}"


def _first_difference(a: Any, b: Any, path: str = "") -> str:
  if isinstance(a, dict) and isinstance(b, dict):
    for k in sorted(set(a) | set(b)):
      if k not in a or k not in b:
        return f"{path}{k}: present in only one"
      if a[k] != b[k]:
        return _first_difference(a[k], b[k], f"{path}{k}.")
  return f"{path.rstrip('.')}: saved {a!r}, now {b!r}"


def verify(workdir: str) -> dict[int, list[str]]:
  """`{step: problems}` for every checkpoint of `workdir` (no problems: it verifies).

  Reads each step's files against its checksums, then its arrays (to the
  host, whatever devices saved them) against their fingerprints.
  """
  directory = epath.Path(workdir) / "checkpoints"
  manager = ocp.CheckpointManager(directory, item_names=("state", "data", "config"))
  out = {}
  try:
    for step in manager.all_steps():
      step_dir = os.fspath(directory / str(step))
      try:
        manifest = integrity.read_manifest(step_dir)
      except ValueError as e:
        out[step] = [str(e)]
        continue
      if manifest is None:
        out[step] = ["it has no checksums"]
        continue
      problems = integrity.check_files(step_dir, manifest)
      problems += _check_arrays_on_host(step_dir, manifest)
      bad = integrity.non_finite(manifest["arrays"])
      out[step] = problems + ([f"it holds NaN or infinity ({', '.join(bad[:3])})"] if bad else [])
  finally:
    manager.close()
  return out


def read_on_host(step_dir: str):
  """The train state saved in `step_dir`, as nested dicts and lists of numpy
  arrays (whatever devices saved it, and without the classes that made it)."""
  path = os.path.join(step_dir, "state")
  with ocp.PyTreeCheckpointer() as reader:
    meta = reader.metadata(path)
    meta = getattr(meta, "item_metadata", meta)
    restore_args = jax.tree_util.tree_map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), meta)
    return reader.restore(path, args=ocp.args.PyTreeRestore(item=meta, restore_args=restore_args))


def _check_arrays_on_host(step_dir: str, manifest: dict) -> list[str]:
  """The step's arrays read to the host (whatever devices saved them) against
  their fingerprints: names the arrays that changed, or why they cannot be read."""
  try:
    state = read_on_host(step_dir)
  except Exception as e:  # pylint: disable=broad-except
    return [f"its arrays cannot be read ({type(e).__name__}: {str(e)[:200]})"]
  return integrity.check_arrays(manifest["arrays"], integrity.host_summary(state))


def main(argv: list[str]) -> int:
  """`python -m cmjax.checkpoint verify WORKDIR`: exit status 1 if a step fails."""
  if len(argv) != 2 or argv[0] != "verify":
    print("usage: python -m cmjax.checkpoint verify WORKDIR", file=sys.stderr)
    return 2
  results = verify(argv[1])
  if not results:
    print(f"No checkpoints in {argv[1]}.")
    return 1
  for step, problems in sorted(results.items()):
    print(f"step {step}: " + ("verified" if not problems else "BAD: " + "; ".join(problems)))
  return 1 if any(results.values()) else 0


def list_steps(workdir: str) -> list[int]:
  d = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(d):
    return []
  return sorted(int(x) for x in os.listdir(d) if x.isdigit())


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
