"""Probes on frozen embeddings as pure functions of arrays: a multinomial
logistic regression (the linear probe), k-nearest-neighbour votes, and
N-way K-shot episodes classified by class prototypes.

The logistic regression minimises

  mean_i CE(softmax(x_i W + b), y_i) + (l2 / 2) ||W||^2

(the bias unpenalised) with L-BFGS to convergence: the objective is strictly
convex, so the solution is the one scikit-learn's `LogisticRegression(C=1 /
(l2 n))` finds (tests/test_probes.py checks it).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax


@functools.partial(jax.jit, static_argnames=("classes", "max_steps"))
def _fit(x, y, l2, classes: int, max_steps: int, tol):
  n, d = x.shape
  onehot = jax.nn.one_hot(y, classes, dtype=x.dtype)

  def loss(p):
    logits = x @ p["w"] + p["b"]
    ce = -jnp.mean(jnp.sum(onehot * jax.nn.log_softmax(logits), axis=-1))
    return ce + 0.5 * l2 * jnp.sum(p["w"] * p["w"])

  solver = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(loss)
  params = {"w": jnp.zeros((d, classes), x.dtype), "b": jnp.zeros((classes,), x.dtype)}

  def step(carry):
    p, state, _, i = carry
    value, grad = value_and_grad(p, state=state)
    updates, state = solver.update(grad, state, p, value=value, grad=grad, value_fn=loss)
    p = optax.apply_updates(p, updates)
    return p, state, optax.tree.norm(grad), i + 1

  def going(carry):
    _, _, grad_norm, i = carry
    return (i < max_steps) & (grad_norm > tol)

  init = (params, solver.init(params), jnp.asarray(jnp.inf, x.dtype), 0)
  params, _, grad_norm, steps = jax.lax.while_loop(going, step, init)
  return params["w"], params["b"], grad_norm, steps


def fit_logistic(
  x: np.ndarray, y: np.ndarray, classes: int, l2: float, max_steps: int = 1000, tol: float = 1e-6
) -> tuple[np.ndarray, np.ndarray]:
  """`(W [dim, classes], b [classes])` of the L2-regularised multinomial
  logistic regression of labels `y [n]` on features `x [n, dim]`."""
  x = np.asarray(x, np.float32)
  y = np.asarray(y)
  if x.ndim != 2 or y.shape != (x.shape[0],):
    raise ValueError(f"features [n, dim] and labels [n]; got {x.shape} and {y.shape}")
  if y.size and (y.min() < 0 or y.max() >= classes):
    raise ValueError(f"labels must lie in [0, {classes}); got [{y.min()}, {y.max()}]")
  if not l2 > 0:
    raise ValueError(f"l2={l2}: the probe needs a positive L2 weight")
  w, b, _, _ = _fit(jnp.asarray(x), jnp.asarray(y, jnp.int32), l2, classes, max_steps, tol)
  return np.asarray(w), np.asarray(b)


def knn_predict(
  train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, k: int, classes: int
) -> np.ndarray:
  """`[n_test]` labels voted by the `k` train rows of highest cosine
  similarity (equal votes: the smallest label)."""
  if not 1 <= k <= len(train_x):
    raise ValueError(f"k={k}: needs 1 <= k <= the {len(train_x)} train examples")
  a = train_x / (np.linalg.norm(train_x, axis=1, keepdims=True) + 1e-12)
  q = test_x / (np.linalg.norm(test_x, axis=1, keepdims=True) + 1e-12)
  sim = q @ a.T
  nearest = np.argsort(-sim, axis=1, kind="stable")[:, :k]
  votes = np.zeros((len(test_x), classes), np.int64)
  np.add.at(votes, (np.arange(len(test_x))[:, None], train_y[nearest]), 1)
  return np.argmax(votes, axis=1)


def few_shot_episodes(
  x: np.ndarray, y: np.ndarray, ways: int, shots: int, queries: int, episodes: int, seed: int = 0
) -> np.ndarray:
  """Accuracy `[episodes]` of N-way K-shot classification: each episode draws
  `ways` classes, `shots` support and `queries` query examples of each; a query
  takes the class whose mean support embedding (prototype) is most similar
  (cosine)."""
  x = x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)
  by_class = {c: np.flatnonzero(y == c) for c in np.unique(y)}
  usable = [c for c, idx in by_class.items() if len(idx) >= shots + queries]
  if len(usable) < ways:
    raise ValueError(
      f"{ways}-way {shots}-shot with {queries} queries needs {ways} classes of >= "
      f"{shots + queries} examples; the data has {len(usable)}"
    )
  rng = np.random.default_rng(seed)
  out = np.zeros((episodes,), np.float64)
  for e in range(episodes):
    chosen = rng.choice(usable, ways, replace=False)
    protos, query_x, query_y = [], [], []
    for j, c in enumerate(chosen):
      idx = rng.choice(by_class[c], shots + queries, replace=False)
      protos.append(x[idx[:shots]].mean(axis=0))
      query_x.append(x[idx[shots:]])
      query_y += [j] * queries
    pred = np.argmax(np.concatenate(query_x) @ np.stack(protos).T, axis=1)
    out[e] = np.mean(pred == np.asarray(query_y))
  return out
