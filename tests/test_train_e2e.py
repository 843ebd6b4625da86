"""train.py end to end on the tiny config: learning, outputs, resume, bad input."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from tests import helpers

TINY = "shapes_contrastive.py:tiny"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("tiny"))
  proc = helpers.run_train(workdir, TINY)
  return workdir, proc


def test_tiny_run_writes_metrics_checkpoints_and_events(tiny_run):
  workdir, proc = tiny_run
  with open(os.path.join(workdir, "metrics.json")) as f:
    m = json.load(f)
  assert m["step"] == helpers.load_config("shapes_contrastive.py", "tiny").total_steps
  for key in (
    "zeroshot/shape_accuracy",
    "zeroshot/color_accuracy",
    "retrieval/image_to_text/R@5",
    "retrieval/text_to_image/medr",
    "retrieval/image_to_audio/R@5",
    "retrieval/text_to_audio/R@1",
    "retrieval/image_text/rsum",
    "train/loss",
    "train/examples_per_s",
    "train/mfu",
  ):
    assert key in m, key
    assert np.isfinite(m[key]), key
  assert os.listdir(os.path.join(workdir, "tensorboard"))
  assert "ex/s" in proc.stdout and "MFU" in proc.stdout and "ETA" in proc.stdout


def test_rerun_of_a_finished_run_says_so_and_leaves_its_metrics(tiny_run):
  workdir, _ = tiny_run
  path = os.path.join(workdir, "metrics.json")
  with open(path) as f:
    before = json.load(f)
  assert any(k.startswith("train/") for k in before)
  proc = helpers.run_train(workdir, TINY)
  assert "Resumed from the checkpoint at step 6" in proc.stdout
  assert "already finished" in proc.stdout
  with open(path) as f:
    assert json.load(f) == before  # train/* keys included


def test_the_resolved_config_is_written_at_start(tiny_run):
  workdir, _ = tiny_run
  with open(os.path.join(workdir, "config.json")) as f:
    written = json.load(f)
  config = helpers.load_config("shapes_contrastive.py", "tiny")
  assert written["config"]["batch_size"] == config.batch_size
  assert written["config"]["objectives"]["contrastive"]["type"] == "clip"
  assert written["data"]["modalities"] == ["image", "text", "audio"]


def test_workdir_of_a_different_model_is_refused(tiny_run):
  workdir, _ = tiny_run
  proc = helpers.run_train(workdir, TINY, "--config.model.embed_dim=24", check=False)
  assert proc.returncode != 0
  assert "different model" in proc.stderr and "embed_dim" in proc.stderr


@pytest.mark.parametrize(
  "override, message",
  [
    ("--config.batch_size=-4", "batch_size"),
    ("--config.model.name=vit_huge", "model.name"),
    ("--config.bacth_size=4", "bacth_size"),
    ("--config.data.image_size=60", "image_size"),
  ],
)
def test_bad_config_stops_with_a_message_naming_the_key(tmp_path, override, message):
  proc = helpers.run_train(str(tmp_path), TINY, override, check=False)
  assert proc.returncode != 0
  assert message in proc.stderr


@pytest.fixture(scope="module")
def reference_20(tmp_path_factory):
  """An uninterrupted 20-step run, checkpointing every 2 steps."""
  ref = str(tmp_path_factory.mktemp("ref"))
  helpers.run_train(ref, TINY + ",steps=20", "--config.checkpoint_every_steps=2")
  return ref


def _assert_same_params(ref, workdir, context):
  a, b = helpers.load_params(ref, 20), helpers.load_params(workdir, 20)
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=f"{k}; {context}")


def test_kill_at_a_random_moment_then_resume_gives_identical_params(tmp_path, reference_20):
  arg = TINY + ",steps=20"
  ref = reference_20

  killed = str(tmp_path / "killed")
  rng = np.random.default_rng(int(time.time()))
  proc = subprocess.Popen(
    helpers.train_cmd(killed, arg, "--config.checkpoint_every_steps=2"),
    env=helpers.subprocess_env(),
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
    cwd=helpers.ROOT,
  )
  for line in proc.stdout:  # wait until training is under way
    if line.startswith("[2/"):
      break
  time.sleep(rng.uniform(0.0, 1.0))
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not os.path.exists(os.path.join(killed, "metrics.json")), "finished before the kill"
  from cmjax import checkpoint

  # The steps complete and verified at the kill (a step killed before its
  # checksums is rightly not among them).
  survived = [step for step, problems in checkpoint.verify(killed).items() if not problems]

  out = helpers.run_train(killed, arg, "--config.checkpoint_every_steps=2")
  if survived:  # otherwise the rerun rightly starts from scratch
    assert "Resumed from the checkpoint" in out.stdout, (survived, out.stdout[:3000])
  _assert_same_params(ref, killed, f"killed after {survived}")
  # The steps trained again after the resume are not recorded twice.
  with open(os.path.join(killed, "metrics_history.jsonl")) as f:
    train_steps = [row["step"] for row in map(json.loads, f) if "loss" in row]
  assert train_steps == sorted(set(train_steps)) and train_steps[-1] == 20, train_steps


# Runs train.py and SIGKILLs it at step 10's save: while Orbax writes it (the
# save dispatched, not committed), or once committed but before its checksums.
KILL_AT_SAVE = textwrap.dedent("""
    import os, runpy, signal, sys
    from cmjax import checkpoint, checkpoint_integrity
    moment = sys.argv.pop(1)
    if moment == "writing":
      save = checkpoint.Checkpointer.save
      def killing_save(self, step, *args, **kwargs):
        saved = save(self, step, *args, **kwargs)
        if saved and step == 10:
          os.kill(os.getpid(), signal.SIGKILL)
        return saved
      checkpoint.Checkpointer.save = killing_save
    else:
      write = checkpoint_integrity.write_manifest
      def killing_write(step_dir, arrays):
        if step_dir.endswith("/10"):
          os.kill(os.getpid(), signal.SIGKILL)
        write(step_dir, arrays)
      checkpoint_integrity.write_manifest = killing_write
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
""")


@pytest.mark.slow
# KILL_AT_SAVE also takes "before_checksums" (it passes); left out for the suite's
# time: the state it leaves, a committed step without checksums, is tested in
# test_checkpoint_integrity.py.
@pytest.mark.parametrize("moment", ["writing"])
def test_kill_during_a_save_then_resume_gives_identical_params(tmp_path, reference_20, moment):
  arg = TINY + ",steps=20"
  cmd = helpers.train_cmd(str(tmp_path), arg, "--config.checkpoint_every_steps=2")
  proc = subprocess.run(
    [sys.executable, "-c", KILL_AT_SAVE, moment, *cmd[1:]],
    env=helpers.subprocess_env(PYTHONPATH=helpers.ROOT),
    capture_output=True,
    text=True,
    timeout=600,
    cwd=helpers.ROOT,
  )
  assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
  out = helpers.run_train(str(tmp_path), arg, "--config.checkpoint_every_steps=2")
  # Step 10 is incomplete (never committed, or without its checksums), so an
  # earlier one: 8, or 6 when 8's checksums were still being written.
  resumed = re.search(r"Resumed from the checkpoint at step (\d+) ", out.stdout)
  assert resumed and 2 <= int(resumed.group(1)) <= 8, out.stdout[:3000]
  _assert_same_params(reference_20, str(tmp_path), f"killed while saving ({moment})")


def test_sigterm_saves_a_checkpoint_before_exit(tmp_path):
  workdir = str(tmp_path)
  proc = subprocess.Popen(
    helpers.train_cmd(workdir, TINY + ",steps=400", "--config.checkpoint_every_steps=1000"),
    env=helpers.subprocess_env(),
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
    cwd=helpers.ROOT,
  )
  for line in proc.stdout:
    if line.startswith("[4/"):
      break
  proc.send_signal(signal.SIGTERM)
  rest = proc.stdout.read()
  assert proc.wait(timeout=120) == 0
  assert "SIGTERM: saved a checkpoint" in rest
  from cmjax import checkpoint

  steps = checkpoint.list_steps(workdir)
  assert steps and 4 <= steps[-1] < 400
