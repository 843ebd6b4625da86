"""Image-text matching: the loss against references, hard-negative mining, the
matcher's outputs, and the compositionality evaluator's tie rule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmjax.data import shapes_text
from cmjax.models.matcher import mined_partners
from cmjax.objectives.matching import matching_loss
from tests import helpers


def _logits(seed=0, b=5, k=4):
  rng = np.random.default_rng(seed)
  logits = rng.normal(0, 3, size=(b, k)).astype(np.float32)
  valid = rng.random((b, k)) < 0.7
  valid[0] = True
  return logits, valid


def test_matching_loss_is_the_mean_binary_cross_entropy_of_valid_pairs():
  logits, valid = _logits()
  loss, metrics = matching_loss(jnp.asarray(logits), jnp.asarray(valid))
  target = np.zeros_like(logits)
  target[:, 0] = 1
  p = 1 / (1 + np.exp(-logits.astype(np.float64)))
  nll = -(target * np.log(p) + (1 - target) * np.log(1 - p))
  np.testing.assert_allclose(loss, nll[valid].mean(), rtol=1e-5)
  correct = (logits > 0) == (target > 0)
  np.testing.assert_allclose(metrics["accuracy"], correct[valid].mean(), rtol=1e-6)
  np.testing.assert_allclose(metrics["positive_accuracy"], correct[:, 0][valid[:, 0]].mean())


def test_matching_loss_equals_torch():
  torch = pytest.importorskip("torch")
  logits, valid = _logits(1)
  target = np.zeros_like(logits)
  target[:, 0] = 1
  want = torch.nn.functional.binary_cross_entropy_with_logits(
    torch.tensor(logits[valid]), torch.tensor(target[valid])
  )
  loss, _ = matching_loss(jnp.asarray(logits), jnp.asarray(valid))
  np.testing.assert_allclose(loss, want.numpy(), rtol=1e-5)


def test_mined_partners_are_other_valid_rows_drawn_by_similarity():
  sim = jnp.asarray([[5.0, 1.0, 4.0, 9.0], [0.0, 5.0, 2.0, 1.0], [3.0, 0.5, 5.0, 0.0], [1.0] * 4])
  valid = jnp.asarray([True, True, True, False])
  # Without an rng: the most similar other valid row (never itself, never row 3).
  np.testing.assert_array_equal(mined_partners(sim, valid, None), [2, 2, 0, 0])
  draws = jax.vmap(lambda k: mined_partners(sim, valid, k))(
    jax.random.split(jax.random.key(0), 4000)
  )
  draws = np.asarray(draws)
  for row in range(3):
    counts = np.bincount(draws[:, row], minlength=4) / len(draws)
    allowed = [j for j in range(3) if j != row]
    p = np.exp(np.asarray(sim)[row, allowed])
    np.testing.assert_allclose(counts[allowed], p / p.sum(), atol=0.03)
    assert counts[row] == 0 and counts[3] == 0


def test_matcher_scores_true_pairs_dataset_negatives_and_mined_ones():
  config = helpers.load_config("shapes_contrastive.py", "tiny,loss=itm_mined")
  from cmjax import experiment  # pylint: disable=g-import-not-at-top
  from cmjax.data import datasets  # pylint: disable=g-import-not-at-top

  dataset = datasets.build(config.data)
  model = experiment.build_model(config, dataset.spec)
  src = dataset.source("test", seed=0, num_examples=6)
  rows = [dataset.eval_row(src[i]) for i in range(6)]
  batch = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
  batch["negative_text_mask"][2] = False  # a scene without a negative caption
  batch["image_present"] = np.array([True] * 5 + [False])
  v = model.init({"params": jax.random.key(0), "dropout": jax.random.key(1)}, batch)
  out = model.apply(v, batch, train=True, rngs={"dropout": jax.random.key(2)})
  assert out["match_logits"].shape == (6, 4) and out["match_valid"].shape == (6, 4)
  valid = np.asarray(out["match_valid"])
  assert valid[:5, 0].all() and not valid[5].any()  # the row without its image counts nowhere
  assert not valid[2, 1] and valid[1, 1]
  score = model.apply(
    v, batch["image"], batch["text"], batch["text_mask"], method="match_image_text"
  )
  np.testing.assert_allclose(score, out["match_logits"][:, 0], rtol=1e-5, atol=1e-5)


def test_compositionality_ties_of_a_bag_of_words_model_are_failures():
  config = helpers.load_config("shapes_contrastive.py", "tiny,text=bow")
  ctx = helpers.eval_context(config)
  from cmjax.evaluators import get_evaluator_cls  # pylint: disable=g-import-not-at-top

  entry = dict(type="compositionality", split="test", num_examples=40, batch_size=16)
  ev = get_evaluator_cls("compositionality")(entry, ctx)
  batch = {k: jnp.zeros(s.shape, s.dtype) for k, s in ctx.dataset.spec.batch(2).items()}
  v = ctx.model.init(jax.random.key(0), batch)
  scores = ev.scores(v)
  # Attribute and order swaps use the true caption's words: the same score.
  for k, swap in enumerate(shapes_text.SWAP_TYPES):
    rows = ev.has[:, k]
    same = np.isclose(scores[rows, 0], scores[rows, 1 + k], rtol=1e-5, atol=1e-6)
    assert same.all() == (swap != "relation"), swap
  got = dict(ev.run(v))
  assert got["compositionality/attribute/accuracy"] == 0.0
  assert got["compositionality/order/accuracy"] == 0.0
  assert got["compositionality/order/count"] == ev.images.shape[0] > 5


def test_speech_image_matching_mines_its_negatives():
  config = helpers.load_config("shapes_contrastive.py", "tiny,loss=itm_mined")
  config.model.pair = ("image", "audio")
  config.model.negatives = ("mined",)
  from cmjax import experiment  # pylint: disable=g-import-not-at-top
  from cmjax.data import datasets  # pylint: disable=g-import-not-at-top

  dataset = datasets.build(config.data)
  model = experiment.build_model(config, dataset.spec)
  batch = {k: jnp.zeros(s.shape, s.dtype) for k, s in dataset.spec.batch(3).items()}
  batch["audio"] = jax.random.normal(jax.random.key(3), batch["audio"].shape) * 0.1
  batch["audio_mask"] = jnp.ones_like(batch["audio_mask"])
  v = model.init(jax.random.key(0), batch)
  out = model.apply(v, batch)
  assert out["match_logits"].shape == (3, 3) and np.asarray(out["match_valid"]).all()
  config.model.negatives = ("dataset", "mined")
  with pytest.raises(ValueError, match="negative captions"):
    experiment.build_model(config, dataset.spec).init(jax.random.key(0), batch)
