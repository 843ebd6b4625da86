"""The alignment objective: VICReg / Barlow Twins parity with PyTorch, masked
rows, collapse without the anti-collapse term and none with it, config errors."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from cmjax import alignment_losses as al
from cmjax.objectives import base
from cmjax.objectives.alignment import AlignmentObjective


def _objective(**entry):
  return AlignmentObjective(dict(type="alignment", **entry), ctx=None, where="config.objectives.a")


def _pair(seed=0, n=24, d=6):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, d)).astype(np.float32)
  y = (0.6 * x + rng.normal(size=(n, d))).astype(np.float32)
  return x, y


def test_vicreg_and_barlow_equal_torch_references():
  torch = pytest.importorskip("torch")
  F = torch.nn.functional
  x, y = _pair()
  tx, ty = torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64)
  n, d = x.shape

  def off_diagonal(m):
    return m - torch.diag(torch.diag(m))

  # VICReg as its paper's reference code computes it (unbiased variance, eps 1e-4).
  repr_loss = F.mse_loss(tx, ty)
  cx, cy = tx - tx.mean(0), ty - ty.mean(0)
  std_x, std_y = torch.sqrt(cx.var(0) + 1e-4), torch.sqrt(cy.var(0) + 1e-4)
  std_loss = F.relu(1 - std_x).mean() / 2 + F.relu(1 - std_y).mean() / 2
  cov_loss = (off_diagonal(cx.T @ cx / (n - 1)) ** 2).sum() / d
  cov_loss = cov_loss + (off_diagonal(cy.T @ cy / (n - 1)) ** 2).sum() / d
  vicreg = 25 * repr_loss + 25 * std_loss + cov_loss

  # Barlow Twins: affine-free BatchNorm in training mode, C / n, lambda 5e-3.
  def bn(z):
    return F.batch_norm(z, None, None, training=True, eps=1e-5)

  c = bn(tx).T @ bn(ty) / n
  barlow = ((torch.diag(c) - 1) ** 2).sum() + 5e-3 * (off_diagonal(c) ** 2).sum()

  out = {"image": jnp.asarray(x), "text": jnp.asarray(y)}
  ours_v, m_v = _objective(regularizer="vicreg")(out, {}, 0)
  ours_b, m_b = _objective(regularizer="barlow")(out, {}, 0)
  np.testing.assert_allclose(float(m_v["invariance/image_text"]), repr_loss.item(), rtol=1e-5)
  np.testing.assert_allclose(float(ours_v), vicreg.item(), rtol=1e-5)
  np.testing.assert_allclose(float(m_b["barlow/image_text"]), barlow.item(), rtol=1e-5)
  np.testing.assert_allclose(float(ours_b), barlow.item(), rtol=1e-5)


def test_masked_rows_count_nowhere():
  x, y = _pair(1, n=16)
  keep = np.arange(16) % 3 != 0
  x_junk, y_junk = x.copy(), y.copy()
  x_junk[~keep] = 1e3  # what sits in a missing modality's rows must not matter
  w = jnp.asarray(keep, jnp.float32)
  for fn in (
    lambda a, b, w: al.invariance(a, b, w),
    lambda a, b, w: al.vicreg_variance(a, w),
    lambda a, b, w: al.vicreg_covariance(a, w),
    lambda a, b, w: al.barlow_twins(a, b, w),
    lambda a, b, w: al.embedding_std(a, w),
  ):
    np.testing.assert_allclose(
      float(fn(x_junk, y_junk, w)), float(fn(x[keep], y[keep], None)), rtol=1e-5
    )
  present = {"image_present": jnp.asarray(keep), "text_present": jnp.ones(16, bool)}
  out = {"image": x_junk, "text": y_junk, **present}
  loss, _ = _objective(regularizer="vicreg")(out, {}, 0)
  ref, _ = _objective(regularizer="vicreg")({"image": x[keep], "text": y[keep]}, {}, 0)
  np.testing.assert_allclose(float(loss), float(ref), rtol=1e-5)


def test_constant_embeddings_are_penalised_only_with_the_regulariser():
  z = jnp.ones((8, 4))
  assert float(al.embedding_std(z)) == 0.0
  assert float(al.invariance(z, z)) == 0.0  # collapse is a minimum of alignment alone
  np.testing.assert_allclose(float(al.vicreg_variance(z)), 1 - np.sqrt(1e-4), rtol=1e-6)
  # Barlow: every standardised dimension is 0, so each diagonal term is (0 - 1)^2.
  np.testing.assert_allclose(float(al.barlow_twins(z, z)), 4.0, rtol=1e-6)


@pytest.mark.parametrize("regularizer", ["none", "vicreg", "barlow"])
def test_training_collapses_only_without_the_regulariser(regularizer):
  """Two linear maps of paired views trained on the objective alone: the plain
  alignment shrinks both to a point; VICReg / Barlow Twins keep them spread."""
  rng = np.random.default_rng(0)
  signal = rng.normal(size=(256, 8)).astype(np.float32)
  views = {
    m: jnp.asarray(signal + 0.3 * rng.normal(size=signal.shape).astype(np.float32))
    for m in ("image", "text")
  }
  params = {m: jnp.asarray(rng.normal(size=(8, 8)).astype(np.float32)) for m in views}
  objective = _objective(regularizer=regularizer)

  def loss_fn(p):
    return objective({m: views[m] @ p[m] for m in views}, {}, 0)

  tx = optax.adam(1e-2)
  state = tx.init(params)

  @jax.jit
  def step(p, s):
    (_, metrics), g = jax.value_and_grad(loss_fn, has_aux=True)(p)
    updates, s = tx.update(g, s)
    return optax.apply_updates(p, updates), s, metrics

  _, _, start = step(params, state)
  for _ in range(2000):
    params, state, metrics = step(params, state)
  std = float(metrics["std/image"])
  if regularizer == "none":
    assert std < 0.02 * float(start["std/image"])
  else:
    assert std > 0.5


def test_bad_entries_name_the_key():
  with pytest.raises(ValueError, match=r"config.objectives.a.regularizer='vic'"):
    _objective(regularizer="vic")
  with pytest.raises(ValueError, match=r"unknown keys \['variance_weight'\]"):
    _objective(variance_weight=1.0)  # a VICReg option without regularizer='vicreg'
  with pytest.raises(ValueError, match="at least two"):
    _objective().check(["image", "logit_scale"], [])


def test_combines_with_clip_as_weighted_terms():
  x, y = _pair(2)
  norm = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)
  out = {"image": norm(x), "text": norm(y), "logit_scale": jnp.float32(np.log(10.0))}
  config = ml_collections.ConfigDict(
    dict(
      objectives=dict(
        contrastive=dict(type="clip"),
        align=dict(type="alignment", regularizer="vicreg", weight=0.5),
      )
    )
  )
  total, metrics = base.build(config, dataset=None)(out, {}, 0)
  np.testing.assert_allclose(
    float(total), float(metrics["contrastive/loss"]) + 0.5 * float(metrics["align/loss"]), rtol=1e-6
  )
  assert {"align/std/image", "align/variance/image_text"} <= set(metrics)
