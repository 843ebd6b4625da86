"""Orbax checkpointing of the train state together with the data iterator state.

One `CheckpointManager` under `workdir/checkpoints` with two items per step:
`state` (params, optimizer state, step; saved asynchronously) and `data` (the
grain iterator position, a small JSON file). A run restarted in the same workdir
restores the newest step that restores cleanly; a step folder that is empty or
unreadable (a crash at the wrong moment) is skipped with a warning rather than
ending the run.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp
from etils import epath

# Written next to the checkpoints: what model the checkpoints belong to.
_SIGNATURE_FILE = "model_signature.json"


class Checkpointer:
  """Saves every `every_steps` steps and keeps the newest `keep` checkpoints."""

  def __init__(self, workdir: str, *, every_steps: int, keep: int, async_save: bool = True):
    self.directory = epath.Path(workdir) / "checkpoints"
    options = ocp.CheckpointManagerOptions(
      save_interval_steps=max(1, int(every_steps)),
      max_to_keep=max(1, int(keep)),
      enable_async_checkpointing=async_save,
      create=True,
    )
    self.manager = ocp.CheckpointManager(
      self.directory, options=options, item_names=("state", "data")
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
      path.write_text(json.dumps(signature, indent=1, sort_keys=True))

  def save(self, step: int, state: Any, data_iter: Any, *, force: bool = False) -> bool:
    """Saves if `step` is due (or `force`) and not saved already; True if it saved."""
    if step in self._saved_steps:
      return False
    saved = self.manager.save(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(data_iter)
      ),
      force=force,
    )
    if saved:
      self._saved_steps.add(step)
    return saved

  def restore_latest(self, abstract_state: Any, data_iter: Any):
    """Returns `(state, step)` of the newest readable checkpoint, or `(None, None)`.

    `abstract_state` is a tree of `jax.ShapeDtypeStruct`s with shardings, so the
    arrays come back laid out for the current mesh (which may differ from the
    one they were saved from). `data_iter` is restored in place.
    """
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        restored = self.manager.restore(
          step,
          args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state),
            data=grain.checkpoint.CheckpointRestore(data_iter),
          ),
        )
        return restored["state"], step
      except Exception as e:  # pylint: disable=broad-except
        logging.warning(
          "Checkpoint at step %d could not be restored (%s: %s); trying an older one.",
          step,
          type(e).__name__,
          e,
        )
    return None, None

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
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def _first_difference(a: Any, b: Any, path: str = "") -> str:
  if isinstance(a, dict) and isinstance(b, dict):
    for k in sorted(set(a) | set(b)):
      if k not in a or k not in b:
        return f"{path}{k}: present in only one"
      if a[k] != b[k]:
        return _first_difference(a[k], b[k], f"{path}{k}.")
  return f"{path.rstrip('.')}: saved {a!r}, now {b!r}"


def list_steps(workdir: str) -> list[int]:
  d = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(d):
    return []
  return sorted(int(x) for x in os.listdir(d) if x.isdigit())
