"""The strict config-argument parser and duration resolution."""

import ml_collections
import pytest

from cmjax import config_utils
from tests.helpers import load_config


def test_parse_arg_flags_and_values():
  a = config_utils.parse_arg(
    "tiny,batch_size=64,lr=0.5,loss=siglip", tiny=False, batch_size=0, lr=1.0, loss="clip"
  )
  assert a.tiny is True and a.batch_size == 64 and a.lr == 0.5 and a.loss == "siglip"
  assert isinstance(a.batch_size, int)


def test_parse_arg_rejects_unknown_key_and_names_it():
  with pytest.raises(ValueError, match="bacth_size"):
    config_utils.parse_arg("bacth_size=3", batch_size=0)


@pytest.mark.parametrize(
  "arg, message",
  [
    ("batch_size=abc", "expects a number"),
    ("batch_size=1.5", "expects an integer"),
    ("batch_size", "needs a value"),
    ("tiny=maybe", "true/false"),
  ],
)
def test_parse_arg_bad_values(arg, message):
  with pytest.raises(ValueError, match=message):
    config_utils.parse_arg(arg, tiny=False, batch_size=0)


def test_resolve_steps_units():
  c = ml_collections.ConfigDict(dict(total_steps=None, total_epochs=2, total_examples=None))
  assert config_utils.resolve_steps(c, "total", batch_size=10, num_train_examples=55) == 11
  c = ml_collections.ConfigDict(dict(total_examples=1000))
  assert config_utils.resolve_steps(c, "total", batch_size=10, num_train_examples=None) == 100
  c = ml_collections.ConfigDict(dict(total_steps=7))
  assert config_utils.resolve_steps(c, "total", batch_size=10, num_train_examples=None) == 7
  c = ml_collections.ConfigDict(dict(warmup_steps=None))
  assert config_utils.resolve_steps(c, "warmup", batch_size=1, num_train_examples=1, default=0) == 0


def test_resolve_steps_rejects_two_units():
  c = ml_collections.ConfigDict(dict(total_steps=3, total_epochs=1))
  with pytest.raises(ValueError, match="only one"):
    config_utils.resolve_steps(c, "total", batch_size=1, num_train_examples=10)


def test_default_config_variants():
  base = load_config("shapes_contrastive.py")
  tiny = load_config("shapes_contrastive.py", "tiny")
  assert tiny.total_steps < base.total_steps and tiny.batch_size < base.batch_size
  sig = load_config("shapes_contrastive.py", "loss=siglip")
  assert sig.objectives.contrastive.type == "siglip" and sig.model.logit_bias_init == -10.0
  with pytest.raises(ValueError, match="tinny"):
    load_config("shapes_contrastive.py", "tinny")


def test_every_config_has_the_keys_the_readme_overrides():
  """`--config.X=...` only works for keys the config has (ml_collections refuses new ones)."""
  for name in (
    "shapes_contrastive.py",
    "shapes_video.py",
    "shapes_classify.py",
    "av_digits_classify.py",
  ):
    c = load_config(name, "tiny")
    for key in (
      "grad_accum_steps",
      "grad_accum",
      "dtype",
      "mesh.data",
      "mesh.fsdp",
      "mesh.model",
      "optim.lr",
      "optim.name",
      "batch_size",
      "total_steps",
      "step",
      "imports",
    ):
      node = c
      for part in key.split("."):
        assert part in node, (name, key)
        node = node[part]
    for term in c.objectives.values():
      if term.type in ("clip", "siglip"):
        assert "sharded" in term, name
