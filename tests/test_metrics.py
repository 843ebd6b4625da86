"""Evaluation metrics against scikit-learn and brute force."""

import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from cmjax.evaluators import metrics


def test_ranks_one_positive_match_sklearn_top_k():
  rng = np.random.default_rng(0)
  sim = rng.normal(size=(200, 200))
  pos = np.eye(200, dtype=bool)
  ranks = metrics.best_positive_ranks(sim, pos)
  for k in (1, 5, 10):
    want = skm.top_k_accuracy_score(np.arange(200), sim, k=k, labels=np.arange(200))
    assert metrics.retrieval_metrics(ranks)[f"R@{k}"] == pytest.approx(want)


def test_ranks_several_positives_brute_force():
  rng = np.random.default_rng(1)
  sim = rng.normal(size=(30, 90))
  owner_q, owner_c = np.arange(30), np.repeat(np.arange(30), 3)
  pos = owner_q[:, None] == owner_c[None, :]
  ranks = metrics.best_positive_ranks(sim, pos)
  for q in range(30):
    order = np.argsort(-sim[q])
    first_hit = next(i for i, c in enumerate(order) if owner_c[c] == q)
    assert ranks[q] == first_hit


def test_median_and_mean_rank():
  m = metrics.retrieval_metrics(np.array([0, 1, 2, 9]))
  assert m["medr"] == 2.5 and m["meanr"] == 4.0 and m["R@1"] == 0.25
  assert m["R@10"] == 1.0 and m["R@5"] == 0.75


def test_ranks_reject_query_without_positive():
  with pytest.raises(ValueError, match="positive"):
    metrics.best_positive_ranks(np.zeros((2, 2)), np.array([[1, 0], [0, 0]], bool))


def test_accuracy_and_macro_f1_match_sklearn():
  rng = np.random.default_rng(2)
  y, p = rng.integers(0, 6, 500), rng.integers(0, 6, 500)
  assert metrics.accuracy(y, p) == pytest.approx(skm.accuracy_score(y, p))
  assert metrics.macro_f1(y, p, 6) == pytest.approx(skm.f1_score(y, p, average="macro"))


@pytest.mark.parametrize("seed", range(4))
def test_macro_precision_recall_f1_and_confusion_match_sklearn(seed):
  rng = np.random.default_rng(seed)
  # Skewed classes, one class never predicted, one never true: the edge cases.
  y = rng.choice(7, 300, p=[0.4, 0.2, 0.15, 0.1, 0.1, 0.05, 0.0])
  p = np.where(rng.random(300) < 0.6, y, rng.integers(0, 7, 300))
  p = np.where(p == 3, 6, p)
  got = metrics.macro_precision_recall_f1(y, p, 7)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # sklearn warns about the 0/0 classes
    want = skm.precision_recall_fscore_support(y, p, average="macro", zero_division=0)
  assert got["precision"] == pytest.approx(want[0])
  assert got["recall"] == pytest.approx(want[1])
  assert got["f1"] == pytest.approx(want[2])
  np.testing.assert_array_equal(
    metrics.confusion_matrix(y, p, 7), skm.confusion_matrix(y, p, labels=range(7))
  )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_average_precision_matches_sklearn_with_ties(seed):
  rng = np.random.default_rng(seed)
  scores = rng.integers(0, 6, 50).astype(float)  # many ties
  targets = rng.random(50) < 0.3
  targets[0] = True
  assert metrics.average_precision(scores, targets) == pytest.approx(
    skm.average_precision_score(targets, scores), abs=1e-12
  )


def test_map_and_multilabel_f1_match_sklearn():
  rng = np.random.default_rng(3)
  scores = rng.normal(size=(40, 6))
  targets = (rng.random((40, 6)) < 0.3).astype(np.float32)
  targets[:, 5] = 0  # a class with no positive is left out of the mean
  kept = targets[:, :5]
  want = skm.average_precision_score(kept, scores[:, :5], average="macro")
  assert metrics.mean_average_precision(scores, targets) == pytest.approx(want, abs=1e-12)
  predicted = scores > 0.3
  want_f1 = skm.f1_score(targets, predicted, average="macro", zero_division=0)
  assert metrics.multilabel_macro_f1(predicted, targets) == pytest.approx(want_f1, abs=1e-12)


def test_pearson_and_weighted_f1_match_scipy_and_sklearn():
  from scipy import stats

  rng = np.random.default_rng(4)
  x = rng.normal(size=30)
  y = 0.5 * x + rng.normal(size=30)
  assert metrics.pearson_r(x, y) == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-12)
  assert metrics.pearson_r(np.ones(5), np.arange(5)) == 0.0
  a, b = (x >= 0).astype(int), (y >= 0).astype(int)
  assert metrics.weighted_f1(a, b, 2) == pytest.approx(skm.f1_score(a, b, average="weighted"))
