"""The `linear_probe` and `knn` evaluators on a tiny shapes contrastive model:
they embed train and held-out images of the label they name and score them;
an embedding that carries the label is read perfectly, one that carries
nothing scores near chance, and bad entries are refused by name."""

import jax
import numpy as np
import pytest

from cmjax.evaluators import get_evaluator_cls
from tests import helpers


@pytest.fixture(scope="module")
def setup():
  config = helpers.load_config("shapes_contrastive.py", "tiny")
  ctx = helpers.eval_context(config)
  batch = {"image": np.zeros((2, 64, 64, 3), np.uint8)}
  variables = ctx.model.init(jax.random.key(0), batch)
  return ctx, variables


def _entry(kind, **extra):
  return dict(type=kind, label="shape_label", num_train=96, num_examples=64, batch_size=32, **extra)


def _with_embeddings(evaluator, fn):
  """Replaces the model's embedding by `fn(labels)` of the rows it is given."""
  train_y, test_y = evaluator.train_y, evaluator.test_y
  evaluator.embed = lambda variables: (fn(train_y), fn(test_y))
  return evaluator


def test_probes_run_on_the_model_and_name_their_metrics(setup):
  ctx, variables = setup
  probe = get_evaluator_cls("linear_probe")(_entry("linear_probe", l2=[1e-3, 1e-1]), ctx)
  knn = get_evaluator_cls("knn")(
    _entry("knn", k=[1, 5], few_shot=dict(ways=3, shots=[1, 2], queries=2, episodes=10)), ctx
  )
  got = dict(probe.run(variables)) | dict(knn.run(variables))
  assert set(got) == {
    "linear_probe/shape_label_accuracy",
    "linear_probe/shape_label_l2",
    "knn/shape_label_k1",
    "knn/shape_label_k5",
    "knn/shape_label_3way_1shot",
    "knn/shape_label_3way_1shot_ci95",
    "knn/shape_label_3way_2shot",
    "knn/shape_label_3way_2shot_ci95",
  }
  assert got["linear_probe/shape_label_l2"] in (1e-3, 1e-1)
  assert all(0 <= v <= 1 for k, v in got.items() if not k.endswith("_l2"))


def test_a_label_carrying_embedding_is_read_and_noise_is_not(setup):
  ctx, variables = setup
  classes = ctx.dataset.num_classes("shape_label")
  rng = np.random.default_rng(0)
  centers = rng.normal(size=(classes, 16))
  carrying = lambda y: centers[y] + 0.05 * rng.normal(size=(len(y), 16))  # noqa: E731
  noise = lambda y: rng.normal(size=(len(y), 16))  # noqa: E731
  for fn, expect in ((carrying, lambda a: a == 1.0), (noise, lambda a: a < 0.6)):
    probe = _with_embeddings(get_evaluator_cls("linear_probe")(_entry("linear_probe"), ctx), fn)
    knn = _with_embeddings(get_evaluator_cls("knn")(_entry("knn", k=[1]), ctx), fn)
    acc = dict(probe.run(variables))["linear_probe/shape_label_accuracy"]
    acc_knn = dict(knn.run(variables))["knn/shape_label_k1"]
    assert expect(acc) and expect(acc_knn), (fn, acc, acc_knn)


def test_bad_probe_entries_are_named(setup):
  ctx, _ = setup
  with pytest.raises(ValueError, match="needs `label`"):
    get_evaluator_cls("knn")(dict(type="knn"), ctx)
  with pytest.raises(ValueError, match="has no label 'colour'"):
    get_evaluator_cls("knn")(_entry("knn") | dict(label="colour"), ctx)
  with pytest.raises(ValueError, match="modality='video'"):
    get_evaluator_cls("knn")(_entry("knn", modality="video"), ctx)
  with pytest.raises(ValueError, match="l2=0"):
    get_evaluator_cls("linear_probe")(_entry("linear_probe", l2=0), ctx)
