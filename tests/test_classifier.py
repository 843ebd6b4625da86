"""The fusion classifier, its loss and modality dropout."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cmjax import losses
from cmjax.models.classifier import FusionClassifier, modality_dropout
from tests import helpers


def test_cross_entropy_matches_optax_and_the_weighted_formula():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(32, 5)).astype(np.float32)
  labels = rng.integers(0, 5, 32)
  want = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  np.testing.assert_allclose(losses.softmax_cross_entropy(logits, labels), want, rtol=1e-6)
  w = rng.uniform(0.2, 3.0, 5).astype(np.float32)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  np.testing.assert_allclose(
    losses.softmax_cross_entropy(logits, labels, w),
    np.sum(w[labels] * ce) / np.sum(w[labels]),
    rtol=1e-6,
  )


def test_classification_loss_sums_tasks_and_names_missing_labels():
  rng = np.random.default_rng(1)
  outputs = {"logits/a": rng.normal(size=(8, 3)), "logits/b": rng.normal(size=(8, 2))}
  batch = {"a": rng.integers(0, 3, 8), "b": rng.integers(0, 2, 8)}
  loss, m = losses.classification_loss(outputs, batch)
  np.testing.assert_allclose(loss, m["loss/a"] + m["loss/b"], rtol=1e-6)
  np.testing.assert_allclose(m["accuracy/a"], np.mean(outputs["logits/a"].argmax(-1) == batch["a"]))
  with pytest.raises(KeyError, match="'b'"):
    losses.classification_loss(outputs, {"a": batch["a"]})


def test_modality_dropout_keeps_at_least_one_present_modality():
  present = jnp.asarray(np.random.default_rng(2).random((4000, 3)) < 0.8)
  present = present.at[:, 0].set(True)  # every row has something to keep
  for rate in (0.0, 0.3, 1.0):
    kept = np.asarray(modality_dropout(jax.random.key(3), present, rate))
    assert not np.any(kept & ~np.asarray(present)), "revived an absent modality"
    assert np.all(kept.sum(1) >= 1)
    if rate == 0.0:
      np.testing.assert_array_equal(kept, present)
    if rate == 1.0:
      assert np.all(kept.sum(1) == 1)
  kept = np.asarray(modality_dropout(jax.random.key(4), present, 0.3))
  rows = np.asarray(present).sum(1) == 3
  # Of full rows, a modality is dropped with probability about 0.3 (the
  # all-dropped rescue, 2.7% of rows, adds one back).
  assert 0.25 < 1 - kept[rows].mean() < 0.32


def _batch():
  rng = np.random.default_rng(5)
  return {
    "image": rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8),
    "text": rng.integers(2, 30, (4, 6)).astype(np.int32),
    "text_mask": np.ones((4, 6), bool),
  }


@pytest.mark.parametrize("fusion", ["concat", "late"])
def test_heads_and_missing_modality_at_the_model_level(fusion):
  model = FusionClassifier(
    modalities=("image", "text"),
    image=dict(patch_size=16, width=8, depth=1, num_heads=2, mlp_dim=16),
    text=dict(vocab_size=30, max_len=6, width=8, depth=1, num_heads=2, mlp_dim=16),
    fusion=dict(name=fusion, width=8),
    heads={"shape_label": 8, "size_label": 2},
  )
  b = _batch()
  v = nn.meta.unbox(model.init(jax.random.key(0), b))
  out = model.apply(v, b)
  assert out["logits/shape_label"].shape == (4, 8) and out["logits/size_label"].shape == (4, 2)
  b_missing = dict(b, text_present=np.array([True, False, True, True]))
  other = dict(b_missing, text=np.roll(b["text"], 1, axis=0))
  a, c = model.apply(v, b_missing), model.apply(v, other)
  np.testing.assert_allclose(a["logits/shape_label"][1], c["logits/shape_label"][1], atol=1e-5)
  assert np.max(np.abs(a["logits/shape_label"][0] - c["logits/shape_label"][0])) > 1e-5
  with pytest.raises(KeyError, match="_present"):
    model.apply(v, {"image": b["image"]})


def test_classification_run_end_to_end(tmp_path):
  helpers.run_train(
    str(tmp_path),
    "shapes_classify.py:tiny,fusion=low_rank_tensor,tasks=attributes,modality_dropout=0.3",
  )
  import json  # pylint: disable=g-import-not-at-top

  with open(tmp_path / "metrics.json") as f:
    m = json.load(f)
  for task in ("shape_label", "color_label", "size_label"):
    for key in (
      "accuracy",
      "macro_f1",
      "missing_audio_1/accuracy",
      "noise_text_0.5/accuracy",
      "noise_image_0.5/accuracy",
    ):
      assert np.isfinite(m[f"classification/{task}/{key}"]), (task, key)
  with open(tmp_path / "classification.json") as f:
    confusion = json.load(f)["confusion_matrix"]
  n = helpers.load_config("shapes_classify.py", "tiny").evals.classification.num_examples
  assert np.array(confusion["size_label"]).shape == (2, 2)
  assert np.sum(confusion["shape_label"]) == n


def test_corruption_touches_only_its_modality_and_scales_with_level():
  from cmjax.evaluators.classification import ClassificationEvaluator

  config = helpers.load_config("shapes_classify.py", "tiny")
  ev = ClassificationEvaluator(dict(config.evals.classification), helpers.eval_context(config))
  for m in ("image", "text", "audio"):
    low, high = ev.corrupted(m, 0.1), ev.corrupted(m, 0.8)
    for key, value in ev.arrays.items():
      if not key.startswith(m):
        np.testing.assert_array_equal(low[key], value)
    diff = lambda x: np.mean(np.abs(x[m].astype(np.float64) - ev.arrays[m]) > 1e-6)
    assert 0 < diff(low) <= diff(high), m
    np.testing.assert_array_equal(ev.corrupted(m, 0.0)[m], ev.arrays[m])


def _model(missing, fusion="concat", momentum=0.5):
  return FusionClassifier(
    modalities=("image", "text"),
    image=dict(patch_size=16, width=8, depth=1, num_heads=2, mlp_dim=16),
    text=dict(vocab_size=30, max_len=6, width=8, depth=1, num_heads=2, mlp_dim=16),
    fusion=dict(name=fusion, width=8),
    heads={"label": 3},
    missing=missing,
    imputation_momentum=momentum,
  )


@pytest.mark.parametrize("missing", ["mask", "learned", "mean", "predict"])
@pytest.mark.parametrize("fusion", ["gated", "joint_transformer"])
def test_every_missing_strategy_hides_the_missing_modality(missing, fusion):
  model = _model(missing, fusion)
  b = dict(_batch(), text_present=np.array([True, False, True, True]))
  v = nn.meta.unbox(model.init(jax.random.key(0), b))
  other = dict(b, text=np.roll(b["text"], 1, axis=0))
  a, c = model.apply(v, b), model.apply(v, other)
  np.testing.assert_allclose(a["logits/label"][1], c["logits/label"][1], atol=1e-5)
  assert np.max(np.abs(a["logits/label"][0] - c["logits/label"][0])) > 1e-5
  # The stand-in differs between strategies: with 'mask' the row sees no text at
  # all; with the others something stands in for it.
  assert ("aux_loss" in a) == (missing == "predict")


def test_mean_imputation_tracks_the_running_mean_of_present_rows():
  model = _model("mean", momentum=0.5)
  b = dict(_batch(), text_present=np.array([True, False, True, True]))
  v = nn.meta.unbox(model.init(jax.random.key(0), b))
  assert set(v) == {"params", "imputation"}
  _, new = model.apply(v, b, train=True, mutable=["imputation"])
  enc = model.bind(v).encoders["text"]
  pooled = enc(b["text"], b["text_mask"]).pooled
  want = 0.5 * 0 + 0.5 * np.asarray(pooled)[[0, 2, 3]].mean(0)
  np.testing.assert_allclose(new["imputation"]["imputer"]["text_mean"], want, atol=1e-5)
  # At evaluation the running mean is what a missing text row sees.
  np.testing.assert_allclose(v["imputation"]["imputer"]["image_mean"], 0.0)


def test_predicted_stand_in_trains_only_the_predictor():
  model = _model("predict")
  b = dict(_batch(), text_present=np.array([True, False, True, True]))
  v = nn.meta.unbox(model.init(jax.random.key(0), b))
  grads = jax.grad(lambda p: model.apply({"params": p}, b)["aux_loss"])(v["params"])
  norms = {k: float(optax.tree.norm(g)) for k, g in grads.items()}
  assert norms["imputer"] > 0
  assert norms["image_encoder"] == 0 and norms["text_encoder"] == 0
  loss, metrics = losses.classification_loss(model.apply(v, b), dict(b, label=np.zeros(4, int)))
  assert "loss/aux" in metrics
  np.testing.assert_allclose(loss, metrics["loss/label"] + metrics["loss/aux"], rtol=1e-6)


def test_av_digits_run_end_to_end_with_imbalance_remedies(tmp_path):
  helpers.run_train(
    str(tmp_path),
    "av_digits_classify.py:tiny,fusion=bottleneck,"
    "missing=learned,balance=resample,class_skew=1.0,augment=2",
  )
  import json  # pylint: disable=g-import-not-at-top

  with open(tmp_path / "metrics.json") as f:
    m = json.load(f)
  for key in ("accuracy", "macro_f1", "missing_image_1/accuracy", "noise_audio_0.5/accuracy"):
    assert np.isfinite(m[f"classification/label/{key}"]), key


def test_test_split_is_the_same_whatever_the_run_seed():
  from cmjax.evaluators.classification import ClassificationEvaluator

  def images(arg, **entry_update):
    config = helpers.load_config("av_digits_classify.py", arg)
    entry = dict(config.evals.classification, **entry_update)
    return ClassificationEvaluator(entry, helpers.eval_context(config)).arrays["image"]

  seed0 = images("tiny")
  np.testing.assert_array_equal(images("tiny,seed=3"), seed0)
  assert not np.array_equal(images("tiny", seed=3), seed0)  # evals.<name>.seed moves it
