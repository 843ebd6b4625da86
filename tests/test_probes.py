"""The probes' arithmetic against scikit-learn: the linear probe is
`LogisticRegression` at the matching C, the k-NN votes `KNeighborsClassifier`'s
(cosine); few-shot episodes on separable and on random data."""

import numpy as np
import pytest

from cmjax.evaluators import probe_math

sklearn = pytest.importorskip("sklearn")


def _data(n=300, d=12, classes=4, seed=0):
  rng = np.random.default_rng(seed)
  centers = rng.normal(size=(classes, d))
  y = rng.integers(0, classes, n)
  x = centers[y] + 1.5 * rng.normal(size=(n, d))
  return x.astype(np.float32), y


@pytest.mark.parametrize("l2", [1e-3, 1e-1])
def test_linear_probe_is_sklearns_logistic_regression(l2):
  from sklearn.linear_model import LogisticRegression

  x, y = _data()
  w, b = probe_math.fit_logistic(x, y, classes=4, l2=l2)
  ref = LogisticRegression(C=1.0 / (l2 * len(y)), tol=1e-10, max_iter=10_000).fit(
    x.astype(np.float64), y
  )
  logits = x @ w + b
  probs = np.exp(logits - logits.max(1, keepdims=True))
  probs /= probs.sum(1, keepdims=True)
  np.testing.assert_allclose(probs, ref.predict_proba(x), atol=2e-4)
  assert (np.argmax(logits, 1) == ref.predict(x)).mean() > 0.99
  # Same solution up to the softmax's free shift of every class by one vector.
  centred = lambda m: m - m.mean(axis=-1, keepdims=True)  # noqa: E731
  np.testing.assert_allclose(centred(w), centred(ref.coef_.T), atol=2e-3)


def test_linear_probe_refuses_bad_inputs_by_name():
  x, y = _data(n=10)
  with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
    probe_math.fit_logistic(x, y, classes=3, l2=0.1)
  with pytest.raises(ValueError, match="l2=0"):
    probe_math.fit_logistic(x, y, classes=4, l2=0.0)


@pytest.mark.parametrize("k", [1, 5, 20])
def test_knn_votes_are_sklearns(k):
  from sklearn.neighbors import KNeighborsClassifier

  x, y = _data(n=400, seed=1)
  train, test = slice(0, 300), slice(300, None)
  ours = probe_math.knn_predict(x[train], y[train], x[test], k=k, classes=4)
  ref = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute")
  ref.fit(x[train], y[train])
  assert (ours == ref.predict(x[test])).mean() >= 0.99  # equal but for exact vote ties


def test_few_shot_separates_clusters_and_is_at_chance_on_noise():
  rng = np.random.default_rng(0)
  centers = rng.normal(size=(10, 16))
  y = np.repeat(np.arange(10), 30)
  x = centers[y] * 5 + rng.normal(size=(300, 16))
  acc = probe_math.few_shot_episodes(x, y, ways=5, shots=1, queries=5, episodes=50)
  assert acc.mean() > 0.95
  noise = rng.normal(size=(300, 16))
  chance = probe_math.few_shot_episodes(noise, y, ways=5, shots=5, queries=5, episodes=200)
  assert abs(chance.mean() - 0.2) < 0.05
  with pytest.raises(ValueError, match="needs 11 classes"):
    probe_math.few_shot_episodes(x, y, ways=11, shots=1, queries=1, episodes=1)
