"""Unknown `--config.x.y` overrides stop train.py with one line; `tiny,steps=N`
moves the tiny variant's periodic evaluations to step N."""

import functools
import glob
import os
import subprocess
import tempfile

import ml_collections
import pytest

from cmjax import config_utils, pretrained
from tests import helpers

CONFIGS = sorted(
  os.path.basename(p) for p in glob.glob(os.path.join(helpers.ROOT, "configs", "*.py"))
)


@pytest.mark.parametrize(
  "config_arg, override, named, suggested",
  [
    (
      "shapes_contrastive.py:tiny",
      "--config.bacth_size=4",
      "config.bacth_size",
      "config.batch_size",
    ),
    ("shapes_contrastive.py:tiny", "--config.optim.lrr=1", "config.optim.lrr", "config.optim.lr"),
    # No --config: ml_collections parses the default config when train.py
    # defines the flag, not when app.run parses flags.
    (None, "--config.optim.lrr=1", "config.optim.lrr", "config.optim.lr"),
  ],
)
def test_unknown_override_stops_with_one_line(tmp_path, config_arg, override, named, suggested):
  workdir = str(tmp_path / "run")
  cmd = helpers.train_cmd(workdir, config_arg or "", override)
  if config_arg is None:
    cmd = [a for a in cmd if not a.startswith("--config=")]
  proc = subprocess.run(
    cmd,
    env=helpers.subprocess_env(),
    capture_output=True,
    text=True,
    timeout=300,
    cwd=helpers.ROOT,
    check=False,
  )
  assert proc.returncode == 2, proc.stderr[-2000:]
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1, proc.stderr[-2000:]
  assert named in lines[0] and suggested in lines[0]
  assert not os.path.exists(workdir)  # stopped before training started


def _config():
  return ml_collections.ConfigDict(
    dict(
      batch_size=8,
      total_steps=6,
      optim=dict(lr=1.0, b1=0.9, warmup_steps=2),
      data=dict(image_size=32, num_workers=0),
    )
  )


@pytest.mark.parametrize(
  "path, named, close",
  [
    ("bacth_size", "config.bacth_size", ["config.batch_size"]),
    ("optim.lrr", "config.optim.lrr", ["config.optim.lr"]),
    ("optimm.lr", "config.optimm (in config.optimm.lr)", ["config.optim"]),
    (
      "image_size",
      "config.image_size",  # wrong level
      ["config.data.image_size", "config.batch_size"],
    ),
  ],
)
def test_unknown_override_message_names_key_and_close_matches(path, named, close):
  message = config_utils.unknown_override_message(_config(), path)
  assert "\n" not in message
  assert f"Unknown config key {named};" in message
  assert message.endswith("closest valid keys: " + ", ".join(close) + ".")


def test_unknown_override_message_without_close_match_lists_the_level():
  message = config_utils.unknown_override_message(_config(), "optim.zzzz")
  assert message.endswith("config.optim has: b1, lr, warmup_steps.")


@pytest.mark.parametrize("path", ["batch_size", "optim.lr", "data", "optim.lr[0]"])
def test_unknown_override_message_is_none_for_valid_keys(path):
  assert config_utils.unknown_override_message(_config(), path) is None


def test_config_key_paths_lists_nested_entries():
  assert config_utils.config_key_paths(_config()) == [
    "batch_size",
    "data",
    "data.image_size",
    "data.num_workers",
    "optim",
    "optim.b1",
    "optim.lr",
    "optim.warmup_steps",
    "total_steps",
  ]


@functools.cache
def _example_weights() -> str:
  """A converted random checkpoint (open_clip layout), for the LiT configs where
  the MiniLM package they default to is absent (as in CI)."""
  from safetensors.numpy import save_file

  from cmjax.pretrained import convert, open_clip_weights

  folder = tempfile.mkdtemp(prefix="cmjax-weights-")
  src = os.path.join(folder, "open_clip_model.safetensors")
  save_file(open_clip_weights.example_state_dict(context_length=32), src)
  convert.convert(src, os.path.join(folder, "converted"), head_width=16)
  return os.path.join(folder, "converted")


def _load(name: str, arg: str | None = None):
  if name in ("shapes_lit.py", "files_lit.py") and pretrained.minilm_folder() is None:
    arg = ",".join(a for a in (arg, f"weights={_example_weights()}") if a)
  return helpers.load_config(name, arg)


def _periodic(c) -> dict:
  return {name: e.every_steps for name, e in c.get("evals", {}).items() if e.every_steps}


@pytest.mark.parametrize("name", CONFIGS)
def test_tiny_steps_moves_periodic_evals_to_the_end(name):
  tiny = _load(name, "tiny")
  longer = _load(name, "tiny,steps=40")
  assert longer.total_steps == 40
  assert _periodic(longer) == {k: 40 for k in _periodic(tiny)}
  # Evaluators that only run at the end stay so; other cadences are unchanged.
  assert {k for k, e in longer.evals.items() if not e.every_steps} == {
    k for k, e in tiny.evals.items() if not e.every_steps
  }
  assert longer.log_every_steps == tiny.log_every_steps
  assert longer.checkpoint_every_steps == tiny.checkpoint_every_steps


def test_some_config_has_periodic_evals():
  """Else the test above checks nothing."""
  assert any(_periodic(_load(n, "tiny")) for n in CONFIGS)


@pytest.mark.parametrize("name", CONFIGS)
def test_steps_without_tiny_keeps_eval_intervals(name):
  full = _load(name)
  longer = _load(name, "steps=40")
  assert _periodic(longer) == _periodic(full)
