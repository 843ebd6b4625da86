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
import sys
import threading
import time

import jax
from jax._src import distributed as jax_distributed

# Seconds without a sign of life after which another process counts as lost.
DEFAULT_PROCESS_TIMEOUT_S = 60.0
# Exit status of a process stopped because another was lost.
EXIT_LOST_PROCESS = 3

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
  process_timeout_s: float = DEFAULT_PROCESS_TIMEOUT_S,
) -> None:
  """Joins the processes into one JAX runtime (see the module docstring); a no-op
  for a single process. Call before anything touches a device.

  With several processes, a `Watchdog` stops this one when another has given no
  sign of life for `process_timeout_s` seconds. JAX's own heartbeat timeout is
  set longer, so that the watchdog, which names the lost process, speaks first.
  """
  settings = resolve(coordinator_address, num_processes, process_id)
  if not settings and not auto:
    return
  if settings.get("num_processes", 2) > 1 and _platform_is_cpu():
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(
    **settings,
    heartbeat_timeout_seconds=int(2 * process_timeout_s + 10),
    # A process that stops after another died need not wait long to say goodbye.
    shutdown_timeout_seconds=int(process_timeout_s + 10),
  )
  if jax.process_count() > 1:
    global _WATCHDOG
    _WATCHDOG = Watchdog(process_timeout_s).start()


_WATCHDOG = None


def wait_for_watchdog() -> None:
  """After an error in a collective: gives the watchdog (if running) the time to
  find a lost process; it then ends this process. Returns if none was lost."""
  if _WATCHDOG is not None:
    time.sleep(_WATCHDOG.timeout_s + 3 * _WATCHDOG.interval_s)
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


class Watchdog:
  """Stops this process, naming the lost one, when another process of the run dies.

  Without it a process whose peer was killed either waits in a collective (NCCL
  never returns) or gets a transport error naming an address, and then JAX
  aborts it with a core-dump-style message after its heartbeat timeout. Here a
  daemon thread writes this process's beat counter to the coordination service's
  key-value store every `timeout_s / 10` seconds and reads everyone's in one
  call; a counter that has not moved for `timeout_s` seconds (measured on this
  process's clock), or a coordinator that no longer answers, ends the process
  with one line and `EXIT_LOST_PROCESS`. The checkpoints are left as they are:
  rerunning the same command on every process resumes from the newest one.
  """

  PREFIX = "cmjax/alive/"

  def __init__(
    self, timeout_s: float, *, exit_fn=os._exit, stream=None, client=None, me=None, count=None
  ):
    """`client`, `me` and `count` default to JAX's (tests pass their own)."""
    self.timeout_s = float(timeout_s)
    self.interval_s = max(0.2, self.timeout_s / 10)
    self.exit_fn, self.stream = exit_fn, stream or sys.stderr
    self.client = client or jax_distributed.global_state.client
    self.me = jax.process_index() if me is None else me
    self.count = jax.process_count() if count is None else count
    self.verdict: str | None = None

  def start(self) -> "Watchdog":
    threading.Thread(target=self._run, name="cmjax-watchdog", daemon=True).start()
    return self

  def _run(self) -> None:
    last_change = {p: time.monotonic() for p in range(self.count)}
    seen: dict[int, str] = {}
    beat = 0
    while True:
      beat += 1
      try:
        self.client.key_value_set(f"{self.PREFIX}{self.me}", str(beat), allow_overwrite=True)
        values = dict(self.client.key_value_dir_get(self.PREFIX))
      except Exception as e:  # pylint: disable=broad-except  # the service is gone
        if self.me == 0:
          raise
        self._stop(f"lost process 0 (the coordinator): it no longer answers ({_first_line(e)})")
        return
      now = time.monotonic()
      for p in range(self.count):
        value = values.get(f"{self.PREFIX}{p}")
        if value != seen.get(p):
          seen[p], last_change[p] = value, now
      lost = [p for p in range(self.count) if now - last_change[p] > self.timeout_s]
      if lost:
        names = ", ".join(str(p) for p in lost)
        self._stop(
          f"lost process {names} of {self.count}: no sign of life for {self.timeout_s:.0f} s "
          "(killed, crashed, or its host is gone)"
        )
        return
      time.sleep(self.interval_s)

  def _stop(self, what: str) -> None:
    self.verdict = what
    print(
      f"Stopped: {what}. Rerun the same command on every process to resume from the newest "
      "checkpoint (`python -m cmjax.checkpoint verify WORKDIR` lists them).",
      file=self.stream,
      flush=True,
    )
    self.exit_fn(EXIT_LOST_PROCESS)


def _first_line(error: Exception) -> str:
  text = str(error).strip()
  return text.splitlines()[0][:200] if text else type(error).__name__
