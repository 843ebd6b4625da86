"""Two processes on 127.0.0.1 (JAX's multi-controller runtime, gloo collectives on
CPU) train like one process with the same global batch."""

import io
import json
import os
import re
import signal
import socket
import subprocess
import time

import pytest

from cmjax import checkpoint, distributed
from tests import helpers

CONFIG = "shapes_contrastive.py:tiny,steps=4"


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _train_losses(workdir) -> dict[int, float]:
  with open(os.path.join(workdir, "metrics_history.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  return {r["step"]: r["loss"] for r in rows if "loss" in r}


def test_two_processes_train_like_one(tmp_path):
  one, two = str(tmp_path / "one"), str(tmp_path / "two")
  address = f"127.0.0.1:{_free_port()}"
  procs = [
    subprocess.Popen(
      helpers.train_cmd(
        two, CONFIG, f"--coordinator_address={address}", "--num_processes=2", f"--process_id={i}"
      ),
      env=helpers.subprocess_env(),
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
      cwd=helpers.ROOT,
    )
    for i in (0, 1)
  ]
  helpers.run_train(one, CONFIG)  # meanwhile, the single-process reference
  outputs = [p.communicate(timeout=600) for p in procs]
  for i, (p, (out, err)) in enumerate(zip(procs, outputs)):
    assert p.returncode == 0, f"process {i}:\n{err[-3000:]}"
  # Only process 0 reports progress.
  assert "Final metrics" in outputs[0][0] and "Final metrics" not in outputs[1][0]

  want, got = _train_losses(one), _train_losses(two)
  assert sorted(got) == sorted(want) == [2, 4], (want, got)
  for step in want:
    assert abs(got[step] - want[step]) <= 1e-5 * abs(want[step]), (step, want, got)
  # Each process checkpointed its own data-iterator position next to the shared state.
  data_dir = os.path.join(two, "checkpoints", "4", "data")
  assert sorted(os.listdir(data_dir)) == [
    "commit_success.txt",
    "process_0-of-2.json",
    "process_1-of-2.json",
  ], os.listdir(data_dir)
  with open(os.path.join(one, "metrics.json")) as f1, open(os.path.join(two, "metrics.json")) as f2:
    final1, final2 = json.load(f1), json.load(f2)
  key = "retrieval/image_to_text/R@5"
  assert final1[key] == final2[key], (final1[key], final2[key])


def test_process_settings_come_from_flags_or_environment(monkeypatch):
  from cmjax import distributed  # pylint: disable=g-import-not-at-top

  for var in ("CMJAX_COORDINATOR_ADDRESS", "CMJAX_NUM_PROCESSES", "CMJAX_PROCESS_ID"):
    monkeypatch.delenv(var, raising=False)
  assert not distributed.resolve()  # single process
  monkeypatch.setenv("CMJAX_NUM_PROCESSES", "4")
  monkeypatch.setenv("CMJAX_PROCESS_ID", "3")
  assert distributed.resolve("10.0.0.1:1234") == {
    "coordinator_address": "10.0.0.1:1234",
    "num_processes": 4,
    "process_id": 3,
  }
  monkeypatch.delenv("CMJAX_PROCESS_ID")
  with pytest.raises(ValueError, match=r"missing: --process_id \(or \$CMJAX_PROCESS_ID\)"):
    distributed.resolve("10.0.0.1:1234")
  with pytest.raises(ValueError, match="process_id=4 is outside"):
    distributed.resolve("10.0.0.1:1234", 4, 4)


def _start(workdir, address, i, *overrides):
  log = open(os.path.join(os.path.dirname(workdir), f"process{i}.log"), "w+")
  cmd = helpers.train_cmd(
    workdir,
    "shapes_contrastive.py:tiny",
    f"--coordinator_address={address}",
    "--num_processes=2",
    f"--process_id={i}",
    "--process_timeout_s=3",
    *overrides,
  )
  proc = subprocess.Popen(
    cmd,
    env=helpers.subprocess_env(),
    stdout=log,
    stderr=subprocess.STDOUT,
    text=True,
    cwd=helpers.ROOT,
  )
  return proc, log


def _read(log) -> str:
  log.flush()
  with open(log.name) as f:
    return f.read()


@pytest.mark.slow
def test_a_killed_process_stops_the_other_naming_it_and_the_rerun_resumes(tmp_path):
  workdir = str(tmp_path / "run")
  steps = ("--config.total_steps=400", "--config.checkpoint_every_steps=4")
  address = f"127.0.0.1:{_free_port()}"
  (p0, log0), (p1, log1) = [_start(workdir, address, i, *steps) for i in (0, 1)]
  deadline = time.time() + 300
  while "[8/400]" not in _read(log0):  # two checkpoints (steps 4 and 8) under way
    assert time.time() < deadline and p0.poll() is None, _read(log0)[-3000:]
    time.sleep(0.2)
  p1.send_signal(signal.SIGKILL)
  killed = time.time()
  p0.wait(timeout=120)
  waited = time.time() - killed
  out = _read(log0)
  assert p0.returncode == distributed.EXIT_LOST_PROCESS, out[-3000:]
  assert "Stopped: lost process 1 of 2: no sign of life for 3 s" in out
  assert waited < 3 + 10, waited  # the timeout, a few beats, and the exit
  report = checkpoint.verify(workdir)
  assert report and not any(report.values()), report
  # The same command on both processes resumes (here with fewer steps to go).
  short = ("--config.total_steps=12", "--config.checkpoint_every_steps=4")
  address = f"127.0.0.1:{_free_port()}"
  (p0, log0), (p1, log1) = [_start(workdir, address, i, *short) for i in (0, 1)]
  assert p0.wait(timeout=600) == 0 and p1.wait(timeout=600) == 0, _read(log0)[-3000:]
  out = _read(log0)
  assert re.search(r"Resumed from the checkpoint at step (4|8|12)\b", out), out[-3000:]
  with open(os.path.join(workdir, "metrics.json")) as f:
    assert json.load(f)["step"] == 12


class _FakeClient:
  """The coordination service's key-value store, with process 1 silent after
  `beats` of its beats, or the whole service gone."""

  def __init__(self, gone=False):
    self.values, self.gone = {}, gone

  def key_value_set(self, key, value, allow_overwrite=False):
    if self.gone:
      raise RuntimeError("UNAVAILABLE: Failed to send RPC to coordination service")
    self.values[key] = value

  def key_value_dir_get(self, prefix):
    return [(k, v) for k, v in self.values.items() if k.startswith(prefix)]


@pytest.mark.parametrize("gone", [False, True])
def test_watchdog_names_the_silent_process_or_the_lost_coordinator(gone):
  client = _FakeClient(gone)
  client.values[distributed.Watchdog.PREFIX + "1"] = "1"  # process 1 beat once, then died
  exits, stream = [], io.StringIO()
  dog = distributed.Watchdog(
    0.5, exit_fn=exits.append, stream=stream, client=client, me=1 if gone else 0, count=2
  )
  start = time.time()
  dog._run()  # returns once it has stopped the process
  assert exits == [distributed.EXIT_LOST_PROCESS]
  if gone:
    assert "Stopped: lost process 0 (the coordinator): it no longer answers" in stream.getvalue()
  else:
    assert "Stopped: lost process 1 of 2: no sign of life" in stream.getvalue()
    assert 0.5 <= time.time() - start < 2
