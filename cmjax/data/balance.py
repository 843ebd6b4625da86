"""Class imbalance: label counts, balanced class weights, balanced resampling."""

from __future__ import annotations

from typing import Any

import numpy as np


def labels_of(source: Any, key: str = "label") -> np.ndarray:
  """int `[n]`: field `key` of every example (a cached source's column if it has one)."""
  if hasattr(source, "column"):
    return np.asarray(source.column(key)).astype(np.int64)
  return np.array([int(source[i][key]) for i in range(len(source))], np.int64)


def balanced_class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
  """float32 `[num_classes]`: n / (num_classes * count_c), as scikit-learn's
  `compute_class_weight('balanced')`; a class with no examples gets weight 0."""
  counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
  weights = np.divide(
    len(labels), num_classes * counts, out=np.zeros_like(counts), where=counts > 0
  )
  return weights.astype(np.float32)


class ResampledSource:
  """A source whose example i is a draw, balanced over classes, from `source`.

  The draws (with replacement, probability proportional to 1 / count of the
  example's class, so every class is equally likely) are fixed by `seed` at
  construction: the wrapped source stays a deterministic random-access source,
  so grain's shuffling and checkpointed iterators work on it unchanged.
  """

  def __init__(self, source: Any, labels: np.ndarray, seed: int):
    labels = np.asarray(labels)
    if len(labels) != len(source):
      raise ValueError(f"{len(labels)} labels for a source of {len(source)} examples")
    counts = np.bincount(labels)
    p = 1.0 / counts[labels]
    rng = np.random.default_rng(seed)
    self.indices = rng.choice(len(source), size=len(source), p=p / p.sum())
    self.source = source

  def __len__(self) -> int:
    return len(self.indices)

  def __getitem__(self, index: int) -> dict:
    return self.source[int(self.indices[index])]

  def __repr__(self) -> str:
    return f"ResampledSource({self.source!r}, balanced)"
