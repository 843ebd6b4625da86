"""A full disk or an unwritable workdir: the run stops with one line saying what
could not be written, every earlier checkpoint stays intact and verifiable, and
the same command resumes once there is space again.

The failure is injected by a file-size limit (RLIMIT_FSIZE, with SIGXFSZ
ignored, so writes past it fail with EFBIG as they would with ENOSPC), set in
the training process once its first checkpoint has been written: the same path
through Orbax, tensorstore and the run files as a disk that fills up.
"""

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

from cmjax import checkpoint
from tests import helpers

# Runs train.py; from the first save after step `after`, files cannot grow past
# `limit` bytes (the checkpoints written up to then are complete and checked).
LIMITED = textwrap.dedent("""
    import resource, runpy, signal, sys
    from cmjax import checkpoint
    after, limit = int(sys.argv.pop(1)), int(sys.argv.pop(1))
    save = checkpoint.Checkpointer.save
    def limited_save(self, step, *args, **kwargs):
      if step > after and resource.getrlimit(resource.RLIMIT_FSIZE)[0] != limit:
        self.wait()
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
      return save(self, step, *args, **kwargs)
    checkpoint.Checkpointer.save = limited_save
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
""")

OVERRIDES = ("--config.total_steps=8", "--config.checkpoint_every_steps=2")


def _train_limited(workdir, after: int, limit: int):
  cmd = helpers.train_cmd(str(workdir), "shapes_contrastive.py:tiny", *OVERRIDES)
  return subprocess.run(
    [sys.executable, "-c", LIMITED, str(after), str(limit), *cmd[1:]],
    env=helpers.subprocess_env(PYTHONPATH=helpers.ROOT),
    capture_output=True,
    text=True,
    timeout=600,
    cwd=helpers.ROOT,
  )


@pytest.mark.slow
@pytest.mark.parametrize(
  "limit, what",
  [
    # Checkpoint files are tens of kilobytes; the run's history stays below 16 KiB.
    (16384, r"Could not write a checkpoint in .*\(File too large writing .*checkpoints/"),
    # The metrics history (about 3 KiB by step 2) cannot grow either.
    (1024, r"(cannot write .*metrics_history.jsonl|Could not write a checkpoint)"),
  ],
)
def test_a_full_disk_stops_the_run_keeping_every_earlier_checkpoint(tmp_path, limit, what):
  proc = _train_limited(tmp_path, after=2, limit=limit)
  assert proc.returncode == 1, proc.stderr[-3000:]
  # One line says it (library threads may still warn as the process exits).
  stopped = [line for line in proc.stderr.splitlines() if line.startswith("Stopped: ")]
  assert len(stopped) == 1 and re.search(what, stopped[0]), proc.stderr[-3000:]
  last = stopped[0]
  assert "rerun the same command" in last
  report = checkpoint.verify(str(tmp_path))
  assert report and report[2] == [] and all(not p for p in report.values()), report
  if limit < 16384:
    return  # the resume is the same as below
  # With space again, the same command resumes from the newest verified step.
  proc = helpers.run_train(str(tmp_path), "shapes_contrastive.py:tiny", *OVERRIDES)
  assert re.search(r"Resumed from the checkpoint at step [2-8]\b", proc.stdout)
  with open(os.path.join(tmp_path, "metrics.json")) as f:
    assert json.load(f)["step"] == 8
  assert not [p for p in os.listdir(tmp_path / "checkpoints") if "tmp" in p]
