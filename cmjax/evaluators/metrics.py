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
    raise ValueError(f"similarity {similarity.shape} and positives "
                     f"{positives.shape} must be equal 2-D shapes.")
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


def macro_f1(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> float:
  """Unweighted mean of per-class F1 over the classes present in labels or predictions."""
  labels, predictions = np.asarray(labels), np.asarray(predictions)
  f1s = []
  for c in range(num_classes):
    tp = np.sum((predictions == c) & (labels == c))
    fp = np.sum((predictions == c) & (labels != c))
    fn = np.sum((predictions != c) & (labels == c))
    if tp + fp + fn == 0:
      continue
    f1s.append(2 * tp / (2 * tp + fp + fn))
  return float(np.mean(f1s)) if f1s else 0.0
