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
