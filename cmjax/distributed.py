"""Starting JAX's multi-controller runtime: one process per host (or per GPU).

Every process runs the same `train.py` command; together they see all devices
of all hosts as one mesh. Where the processes learn who they are:

1. explicit values (train.py's `--coordinator_address`, `--num_processes`,
   `--process_id`), else
2. the environment: `CMJAX_COORDINATOR_ADDRESS`, `CMJAX_NUM_PROCESSES`,
   `CMJAX_PROCESS_ID` (set them in a launcher script), else
3. with `--distributed=auto`, JAX's own detection (Cloud TPU pod slices,
   SLURM, Open MPI, ...), else
4. nothing: a single process.

On CPU, cross-process collectives use gloo (the implementation jax's CPU
backend offers), which is what the 2-process test on 127.0.0.1 runs on.
"""

from __future__ import annotations

import logging
import os

import jax

_ENV = {
  "coordinator_address": "CMJAX_COORDINATOR_ADDRESS",
  "num_processes": "CMJAX_NUM_PROCESSES",
  "process_id": "CMJAX_PROCESS_ID",
}


def resolve(
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
) -> dict:
  """The three settings, each from its argument or else its environment variable.

  Returns {} when none is set (single process); raises naming what is
  missing when only some are.
  """
  given = {
    "coordinator_address": coordinator_address,
    "num_processes": num_processes,
    "process_id": process_id,
  }
  for key, var in _ENV.items():
    if given[key] is None and os.environ.get(var):
      given[key] = os.environ[var]
  if all(v is None for v in given.values()):
    return {}
  missing = [f"--{k} (or ${_ENV[k]})" for k, v in given.items() if v is None]
  if missing:
    raise ValueError(
      f"Multi-process training needs all three settings; missing: {', '.join(missing)}."
    )
  settings = {
    "coordinator_address": str(given["coordinator_address"]),
    "num_processes": int(given["num_processes"]),
    "process_id": int(given["process_id"]),
  }
  if not 0 <= settings["process_id"] < settings["num_processes"]:
    raise ValueError(
      f"process_id={settings['process_id']} is outside "
      f"[0, num_processes={settings['num_processes']})."
    )
  return settings


def initialize(
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
  auto: bool = False,
) -> None:
  """Joins the processes into one JAX runtime (see the module docstring); a no-op
  for a single process. Call before anything touches a device."""
  settings = resolve(coordinator_address, num_processes, process_id)
  if not settings and not auto:
    return
  if settings.get("num_processes", 2) > 1 and _platform_is_cpu():
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(**settings)
  logging.info(
    "process %d of %d; %d local of %d devices",
    jax.process_index(),
    jax.process_count(),
    jax.local_device_count(),
    jax.device_count(),
  )


def _platform_is_cpu() -> bool:
  # Read from the environment: asking jax would start the backend too early.
  return os.environ.get("JAX_PLATFORMS", "").split(",")[0].strip().lower() == "cpu"
