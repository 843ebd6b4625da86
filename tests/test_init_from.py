"""`config.init_from`: a new run starts from another run's parameters, any subset
of them mapped by regex rules; a wrong rule, an unknown name or a shape that
differs stops with one message; a loaded tower can be locked."""

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from cmjax import init_from, trainer
from tests import helpers

SAVED = {"enc/w": np.zeros((3, 4)), "enc/b": np.zeros(4), "head/w": np.zeros((4, 2))}
TARGETS = {
  "image_encoder/w": np.zeros((3, 4)),
  "image_encoder/b": np.zeros(4),
  "classifier/w": np.zeros((4, 5)),
}


def test_rules_map_saved_names_onto_this_model():
  mapping, unused = init_from.match(SAVED, TARGETS, [(r"enc/(.*)", r"image_encoder/\1")])
  assert mapping == {"image_encoder/w": "enc/w", "image_encoder/b": "enc/b"}
  assert unused == ["head/w"]
  same = {k: v for k, v in SAVED.items()}
  assert init_from.match(same, same, None) == ({k: k for k in SAVED}, [])


@pytest.mark.parametrize(
  "rules, message",
  [
    ([(r"encoder/(.*)", r"image_encoder/\1")], r"rules\[0\]: 'encoder/\(\.\*\)' matches no saved"),
    (
      [(r"(.*)", r"\1")],
      r"maps saved parameter 'enc/w' to 'enc/w', which this model does not have",
    ),
    (
      [(r"head/w", "classifier/w")],
      r"parameter 'classifier/w' has shape \(4, 5\) in this model, but the saved 'head/w' has "
      r"shape \(4, 2\)",
    ),
    ([(r"enc/.", "image_encoder/w")], r"loaded from both 'enc/w' and 'enc/b'"),
    ([("(", "x")], r"rules\[0\]: bad regex"),
    (["enc/w"], r"rules\[0\]='enc/w': expected \(regex, replacement\)"),
  ],
)
def test_a_wrong_rule_or_shape_stops_with_one_message(rules, message):
  with pytest.raises(ValueError, match=message):
    init_from.match(SAVED, TARGETS, rules)


@pytest.fixture(scope="module")
def contrastive_run(tmp_path_factory):
  """A saved step holding a contrastive model's image tower with random values (as
  `python -m cmjax.pretrained.convert` writes one), made without training."""
  from cmjax import checkpoint_integrity as integrity
  from cmjax import experiment, sharding

  config = helpers.load_config("shapes_contrastive.py", "tiny")
  exp = experiment.build(config)
  abstract, _, _ = exp.init_state()
  rng = np.random.default_rng(0)
  params = jax.tree_util.tree_map(
    lambda a: rng.normal(size=a.shape).astype(a.dtype), sharding.unbox(abstract.params)
  )
  folder = str(tmp_path_factory.mktemp("contrastive") / "step")
  with ocp.PyTreeCheckpointer() as writer:
    writer.save(folder + "/state", {"params": params})
  integrity.write_manifest(folder, integrity.host_summary({"params": params}))
  return folder


def test_a_locked_pretrained_tower_starts_from_the_run_and_stays_bitwise(contrastive_run, tmp_path):
  """The contrastive run's image tower, loaded into a classifier and frozen
  (LiT's locked tower), is bit for bit the saved one after training; the rest trains."""
  config = helpers.load_config("shapes_classify.py", "tiny")
  config.total_steps = 3
  config.optim.warmup_steps = 1
  config.evals = {}
  config.init_from = dict(
    path=contrastive_run, rules=[(r"image_encoder/(.*)", r"image_encoder/\1")], strict=False
  )
  config.optim.groups = [("image_encoder/.*", dict(frozen=True))]
  workdir = str(tmp_path / "classifier")
  trainer.train_and_evaluate(config, workdir)
  saved = init_from.saved_params(contrastive_run)
  trained = init_from.saved_params(f"{workdir}/checkpoints/3")
  image = [k for k in trained if k.startswith("image_encoder/")]
  assert image and all(k in saved for k in image)
  for k in image:
    np.testing.assert_array_equal(trained[k], saved[k], err_msg=k)
  assert [k for k in trained if "image_encoder" not in k]  # the rest: its own initialisation


def test_init_from_a_missing_path_or_bad_keys_names_them(tmp_path):
  with pytest.raises(ValueError, match="config.init_from.path=.*no such folder"):
    init_from.load(dict(path=str(tmp_path / "nowhere")), {})
  with pytest.raises(
    ValueError, match=r"takes \['path', 'step', 'rules', 'strict', 'resize_positions'\]"
  ):
    init_from.load(dict(path=str(tmp_path), rule=[]), {})


def test_strict_stops_on_parameters_left_or_unused(contrastive_run):
  from cmjax import experiment

  config = helpers.load_config("shapes_classify.py", "tiny")
  exp = experiment.build(config)
  abstract, _, _ = exp.init_state()
  spec = dict(
    path=contrastive_run, rules=[(r"image_encoder/(.*)", r"image_encoder/\1")], strict=True
  )
  with pytest.raises(ValueError, match=r"strict: \d+ parameters of this model are not loaded"):
    init_from.load(spec, abstract.params)
  spec["strict"] = False
  loaded = init_from.load(spec, abstract.params)
  assert loaded and all(k.startswith("image_encoder/") for k in loaded)
  assert all(isinstance(v, jax.Array) for v in loaded.values())
