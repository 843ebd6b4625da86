"""Class imbalance tools: class weights vs scikit-learn, balanced resampling, shifts."""

import numpy as np
from sklearn.utils.class_weight import compute_class_weight

from cmjax.data import balance, records


def test_balanced_class_weights_match_sklearn():
  labels = np.random.default_rng(0).choice(5, 700, p=[0.5, 0.2, 0.15, 0.1, 0.05])
  want = compute_class_weight("balanced", classes=np.arange(5), y=labels)
  np.testing.assert_allclose(balance.balanced_class_weights(labels, 5), want, rtol=1e-6)
  # A class absent from the labels gets weight 0 (sklearn refuses it).
  assert balance.balanced_class_weights(labels, 6)[5] == 0


class _Source:
  def __init__(self, labels):
    self.labels = labels

  def __len__(self):
    return len(self.labels)

  def __getitem__(self, i):
    return {"label": self.labels[i], "index": i}


def test_resampled_source_balances_classes_deterministically():
  labels = np.random.default_rng(1).choice(4, 8000, p=[0.7, 0.2, 0.07, 0.03])
  src = _Source(labels)
  assert np.array_equal(balance.labels_of(src), labels)
  res = balance.ResampledSource(src, labels, seed=3)
  drawn = np.array([res[i]["label"] for i in range(len(res))])
  freq = np.bincount(drawn, minlength=4) / len(drawn)
  np.testing.assert_allclose(freq, 0.25, atol=0.02)
  again = balance.ResampledSource(src, labels, seed=3)
  np.testing.assert_array_equal(again.indices, res.indices)


def test_random_shift_translates_and_repeats_edges():
  img = np.arange(6 * 6 * 3, dtype=np.uint8).reshape(6, 6, 3)
  rng = np.random.default_rng(0)
  for _ in range(20):
    out = records.random_shift(img, 2, rng)
    assert out.shape == img.shape
    # Some (dy, dx) in [-2, 2]^2 explains it exactly.
    padded = np.pad(img, ((2, 2), (2, 2), (0, 0)), mode="edge")
    assert any(
      np.array_equal(out, padded[2 + dy : 8 + dy, 2 + dx : 8 + dx])
      for dy in range(-2, 3)
      for dx in range(-2, 3)
    )
  assert records.random_shift(img, 0, rng) is img
