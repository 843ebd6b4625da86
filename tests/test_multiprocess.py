"""Two processes on 127.0.0.1 (JAX's multi-controller runtime, gloo collectives on
CPU) train like one process with the same global batch."""

import json
import os
import socket
import subprocess

import pytest

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
