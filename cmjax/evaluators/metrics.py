"""Evaluation metrics as pure functions of numpy arrays."""

from __future__ import annotations

import numpy as np


def best_positive_ranks(similarity: np.ndarray, positives: np.ndarray) -> np.ndarray:
  """0-based rank of the best-scoring positive candidate for every query.

  Args:
    similarity: `[queries, candidates]` scores, higher is better.
    positives: `[queries, candidates]` bool, True where the candidate is a
      correct answer for the query (several per query are allowed, as with the
      five captions of a COCO image: retrieving any one of them is a hit).
  Returns:
    `[queries]` int: how many candidates score strictly higher than the best
    positive. Every query must have at least one positive.
  """
  similarity = np.asarray(similarity, np.float64)
  positives = np.asarray(positives, bool)
  if similarity.shape != positives.shape or similarity.ndim != 2:
    raise ValueError(
      f"similarity {similarity.shape} and positives {positives.shape} must be equal 2-D shapes."
    )
  if not positives.any(axis=1).all():
    raise ValueError("every query needs at least one positive candidate.")
  best = np.where(positives, similarity, -np.inf).max(axis=1, keepdims=True)
  return (similarity > best).sum(axis=1)


def retrieval_metrics(ranks: np.ndarray, ks=(1, 5, 10)) -> dict[str, float]:
  """Recall@K for each K, median and mean rank (1-based) from 0-based `ranks`."""
  ranks = np.asarray(ranks)
  out = {f"R@{k}": float(np.mean(ranks < k)) for k in ks}
  out["medr"] = float(np.median(ranks + 1))
  out["meanr"] = float(np.mean(ranks + 1))
  return out


def accuracy(labels: np.ndarray, predictions: np.ndarray) -> float:
  return float(np.mean(np.asarray(labels) == np.asarray(predictions)))


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
  """int64 `[num_classes, num_classes]`: entry (i, j) counts true class i predicted as j."""
  cm = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(cm, (np.asarray(labels), np.asarray(predictions)), 1)
  return cm


def macro_precision_recall_f1(
  labels: np.ndarray, predictions: np.ndarray, num_classes: int
) -> dict[str, float]:
  """Unweighted means over classes of precision, recall and F1.

  As scikit-learn's `precision_recall_fscore_support(average='macro')`: the
  mean runs over the classes present in labels or predictions, and a class
  with no predicted (precision) or no true (recall) examples scores 0.
  """
  cm = confusion_matrix(labels, predictions, num_classes)
  tp = np.diag(cm).astype(np.float64)
  predicted, actual = cm.sum(axis=0), cm.sum(axis=1)
  seen = (predicted + actual) > 0
  if not np.any(seen):
    return {"precision": 0.0, "recall": 0.0, "f1": 0.0}
  precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
  recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
  f1 = np.divide(2 * tp, predicted + actual, out=np.zeros_like(tp), where=seen)
  return {
    "precision": float(np.mean(precision[seen])),
    "recall": float(np.mean(recall[seen])),
    "f1": float(np.mean(f1[seen])),
  }


def macro_f1(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> float:
  """Unweighted mean of per-class F1 over the classes present in labels or predictions."""
  return macro_precision_recall_f1(labels, predictions, num_classes)["f1"]


def weighted_f1(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> float:
  """Per-class F1 averaged with weights = the classes' true counts (scikit-learn's
  `f1_score(average='weighted')`), as sentiment papers report binary F1."""
  cm = confusion_matrix(labels, predictions, num_classes)
  tp = np.diag(cm).astype(np.float64)
  predicted, actual = cm.sum(axis=0), cm.sum(axis=1)
  denom = predicted + actual
  f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
  return float(np.sum(f1 * actual) / max(actual.sum(), 1))


def average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
  """Area under the precision-recall curve as a step function (scikit-learn's
  `average_precision_score`): sum over distinct score thresholds, highest first,
  of (recall gained) x precision. `targets` bool `[n]` needs a positive."""
  scores = np.asarray(scores, np.float64)
  targets = np.asarray(targets, bool)
  if not targets.any():
    raise ValueError("average precision needs at least one positive target.")
  order = np.argsort(-scores, kind="stable")
  scores, targets = scores[order], targets[order]
  # The last index of each run of tied scores: one threshold per distinct score.
  ends = np.r_[np.nonzero(np.diff(scores))[0], len(scores) - 1]
  tp = np.cumsum(targets)[ends]
  precision = tp / (ends + 1)
  recall = tp / targets.sum()
  return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def mean_average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
  """Mean over classes (columns of `[n, classes]`) that have a positive of their
  average precision; classes without one are left out."""
  targets = np.asarray(targets) > 0.5
  aps = [
    average_precision(scores[:, c], targets[:, c])
    for c in range(targets.shape[1])
    if targets[:, c].any()
  ]
  return float(np.mean(aps)) if aps else 0.0


def multilabel_macro_f1(predicted: np.ndarray, targets: np.ndarray) -> float:
  """Mean over every class (column) of F1 = 2tp / (2tp + fp + fn), 0 where a class is
  neither true nor predicted (scikit-learn's macro F1 with zero_division=0)."""
  predicted, targets = np.asarray(predicted) > 0.5, np.asarray(targets) > 0.5
  tp = (predicted & targets).sum(0).astype(np.float64)
  denom = predicted.sum(0) + targets.sum(0)
  return float(np.mean(np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)))


def pearson_r(x: np.ndarray, y: np.ndarray) -> float:
  """Pearson correlation of two `[n]` arrays (0 when either is constant)."""
  x = np.asarray(x, np.float64) - np.mean(x)
  y = np.asarray(y, np.float64) - np.mean(y)
  denom = np.sqrt(np.sum(x * x) * np.sum(y * y))
  return float(np.sum(x * y) / denom) if denom > 0 else 0.0
