"""Contrastive losses against direct numpy versions of the papers' pseudo-code."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cmjax import losses

B, D = 6, 8


def _unit(rng, shape):
  x = rng.standard_normal(shape)
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _np_log_softmax(z, axis):
  z = z - z.max(axis=axis, keepdims=True)
  return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def np_clip(x, y, t):
  """CLIP paper Fig. 3: logits = x y^T exp(t); CE over axis 0 and 1, averaged."""
  logits = x @ y.T * np.exp(min(t, math.log(100)))
  n = np.arange(len(x))
  loss_x = -_np_log_softmax(logits, axis=1)[n, n].mean()
  loss_y = -_np_log_softmax(logits, axis=0)[n, n].mean()
  return (loss_x + loss_y) / 2


def np_siglip(x, y, t, b):
  """SigLIP paper Alg. 1: -sum(log_sigmoid(labels * logits)) / n."""
  logits = x @ y.T * np.exp(t) + b
  labels = 2 * np.eye(len(x)) - 1
  return -np.sum(-np.logaddexp(0.0, -labels * logits)) / len(x)


@pytest.mark.parametrize("t", [0.0, math.log(1 / 0.07), 6.0])  # 6 > log(100)
def test_clip_matches_numpy_and_optax(t):
  rng = np.random.default_rng(0)
  x, y = _unit(rng, (B, D)), _unit(rng, (B, D))
  got = float(losses.clip_loss(jnp.float32(x), jnp.float32(y), t))
  np.testing.assert_allclose(got, np_clip(x, y, t), rtol=1e-5)
  logits = jnp.float32(x @ y.T * np.exp(min(t, math.log(100))))
  labels = jnp.arange(B)
  ref = 0.5 * (
    optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    + optax.softmax_cross_entropy_with_integer_labels(logits.T, labels).mean()
  )
  np.testing.assert_allclose(got, float(ref), rtol=1e-5)


def test_clip_is_not_symmetric_in_one_direction_only():
  # A loss using only one CE direction would pass a symmetric test case; use an
  # asymmetric similarity matrix where the two directions differ.
  rng = np.random.default_rng(3)
  x, y = _unit(rng, (B, D)), _unit(rng, (B, D))
  logits = x @ y.T * 10
  n = np.arange(B)
  one_way = -_np_log_softmax(logits, axis=1)[n, n].mean()
  got = float(losses.clip_loss(jnp.float32(x), jnp.float32(y), math.log(10)))
  assert abs(got - one_way) > 1e-3


@pytest.mark.parametrize("t,b", [(math.log(10), -10.0), (0.0, 0.0), (2.0, 1.5)])
def test_siglip_matches_numpy(t, b):
  rng = np.random.default_rng(1)
  x, y = _unit(rng, (B, D)), _unit(rng, (B, D))
  got = float(losses.siglip_loss(jnp.float32(x), jnp.float32(y), t, b))
  np.testing.assert_allclose(got, np_siglip(x, y, t, b), rtol=1e-5)


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_gradients_finite_and_matching_pairs_lower_loss(kind):
  rng = np.random.default_rng(2)
  x, y = jnp.float32(_unit(rng, (B, D))), jnp.float32(_unit(rng, (B, D)))
  fn = {"clip": losses.clip_loss, "siglip": losses.siglip_loss}[kind]
  args = (math.log(10.0),) if kind == "clip" else (math.log(10.0), -10.0)
  grads = jax.grad(lambda a, b: fn(a, b, *args), argnums=(0, 1))(x, y)
  for g in grads:
    assert np.isfinite(np.asarray(g)).all() and np.abs(np.asarray(g)).max() > 0
  random_pairs = float(fn(x, y, *args))
  matched = float(fn(x, x, *args))  # every pair now identical
  assert matched < random_pairs
  # Plain gradient descent on x lowers the loss.
  step = x - 0.5 * grads[0]
  step = step / jnp.linalg.norm(step, axis=-1, keepdims=True)
  assert float(fn(step, y, *args)) < random_pairs


def _outputs(rng, mods):
  out = {m: jnp.float32(_unit(rng, (B, D))) for m in mods}
  out["logit_scale"] = jnp.float32(math.log(10))
  out["logit_bias"] = jnp.float32(-2.0)
  return out


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_multimodal_sums_pairs(kind):
  rng = np.random.default_rng(4)
  out = _outputs(rng, ("image", "text", "audio"))
  loss, metrics = losses.multimodal_contrastive_loss(out, kind=kind)
  ref = np_clip if kind == "clip" else np_siglip
  extra = () if kind == "clip" else (-2.0,)
  pairs = [("image", "text"), ("image", "audio"), ("text", "audio")]
  want = {
    f"{a}_{b}": ref(
      np.asarray(out[a], np.float64), np.asarray(out[b], np.float64), math.log(10), *extra
    )
    for a, b in pairs
  }
  for k, v in want.items():
    np.testing.assert_allclose(float(metrics[f"loss/{k}"]), v, rtol=1e-5)
  np.testing.assert_allclose(float(loss), sum(want.values()), rtol=1e-5)
  np.testing.assert_allclose(float(metrics["temperature"]), 0.1, rtol=1e-5)
  for a, b in pairs:
    assert 0.0 <= float(metrics[f"accuracy/{a}_{b}"]) <= 1.0


def test_missing_pair_is_skipped_and_accuracy_is_correct():
  rng = np.random.default_rng(5)
  out = _outputs(rng, ("image", "audio"))
  out["audio"] = out["image"]  # perfect retrieval
  loss, metrics = losses.multimodal_contrastive_loss(out, kind="clip")
  assert set(k for k in metrics if k.startswith("loss/")) == {"loss/image_audio"}
  np.testing.assert_allclose(float(loss), float(metrics["loss/image_audio"]))
  assert float(metrics["accuracy/image_audio"]) == 1.0
  # Reversing the rows of one side makes every top-1 match wrong (B even, no fixed point).
  out["audio"] = out["image"][::-1]
  _, metrics = losses.multimodal_contrastive_loss(out, kind="clip")
  assert float(metrics["accuracy/image_to_audio"]) == 0.0


def test_errors():
  rng = np.random.default_rng(6)
  with pytest.raises(ValueError, match="at least two"):
    losses.multimodal_contrastive_loss(_outputs(rng, ("image",)))
  with pytest.raises(ValueError, match="kind"):
    losses.multimodal_contrastive_loss(_outputs(rng, ("image", "text")), kind="nce")


def test_loss_is_jittable():
  rng = np.random.default_rng(7)
  out = _outputs(rng, ("image", "text", "audio"))
  fn = jax.jit(lambda o: losses.multimodal_contrastive_loss(o, kind="siglip"))
  loss, _ = fn(out)
  assert np.isfinite(float(loss))


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_valid_mask_equals_loss_on_the_valid_rows(kind):
  rng = np.random.default_rng(8)
  x, y = jnp.float32(_unit(rng, (B, D))), jnp.float32(_unit(rng, (B, D)))
  valid = np.array([True, False, True, True, False, True])
  args = (math.log(10.0),) if kind == "clip" else (math.log(10.0), -3.0)
  fn = {"clip": losses.clip_loss, "siglip": losses.siglip_loss}[kind]
  got = float(fn(x, y, *args, valid=jnp.asarray(valid)))
  want = float(fn(x[valid], y[valid], *args))
  np.testing.assert_allclose(got, want, rtol=1e-5)
  assert abs(float(fn(x, y, *args)) - want) > 1e-4  # the mask matters
  g = jax.grad(lambda a: fn(a, y, *args, valid=jnp.asarray(valid)))(x)
  assert np.isfinite(np.asarray(g)).all()
  np.testing.assert_array_equal(np.asarray(g)[~valid], 0.0)


def test_present_flags_restrict_pairs():
  rng = np.random.default_rng(9)
  out = _outputs(rng, ("image", "text", "audio"))
  present = np.array([True, True, False, True, True, True])
  out["audio_present"] = jnp.asarray(present)
  _, metrics = losses.multimodal_contrastive_loss(out, kind="clip")
  want = losses.clip_loss(out["image"][present], out["audio"][present], math.log(10))
  np.testing.assert_allclose(float(metrics["loss/image_audio"]), float(want), rtol=1e-5)
  # Pairs not involving audio are untouched.
  np.testing.assert_allclose(
    float(metrics["loss/image_text"]),
    float(losses.clip_loss(out["image"], out["text"], math.log(10))),
    rtol=1e-6,
  )
  acc = losses.retrieval_accuracy(out["image"][present], out["audio"][present])
  np.testing.assert_allclose(float(metrics["accuracy/image_to_audio"]), float(acc[0]))


def test_sigmoid_cross_entropy_and_regression_losses_match_references():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(8, 5)).astype(np.float32) * 4
  targets = (rng.random((8, 5)) < 0.4).astype(np.float32)
  p = 1 / (1 + np.exp(-logits.astype(np.float64)))
  want = -np.mean(targets * np.log(p) + (1 - targets) * np.log(1 - p))
  assert float(losses.sigmoid_cross_entropy(jnp.asarray(logits), jnp.asarray(targets))) == (
    pytest.approx(want, rel=1e-5)
  )
  torch = pytest.importorskip("torch")
  ref = torch.nn.functional.binary_cross_entropy_with_logits(
    torch.tensor(logits), torch.tensor(targets)
  )
  assert float(losses.sigmoid_cross_entropy(jnp.asarray(logits), jnp.asarray(targets))) == (
    pytest.approx(float(ref), rel=1e-5)
  )


def test_regression_and_multilabel_heads_in_classification_loss():
  pred = jnp.asarray([[0.5], [2.0], [-1.0]])
  target = jnp.asarray([1.0, 2.0, 0.0])
  multi = jnp.asarray([[3.0, -3.0], [-3.0, 3.0], [3.0, 3.0]])
  hot = jnp.asarray([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
  outputs = {"logits/value": pred, "logits/set": multi}
  batch = {"value": target, "set": hot}
  kinds = {"value": "regression", "set": "multilabel"}
  total, m = losses.classification_loss(outputs, batch, kinds=kinds)
  assert float(m["loss/value"]) == pytest.approx((0.25 + 0 + 1) / 3)
  assert float(m["mae/value"]) == pytest.approx(0.5)
  assert float(m["label_accuracy/set"]) == pytest.approx(5 / 6)
  assert float(total) == pytest.approx(float(m["loss/value"] + m["loss/set"]))
  _, l1 = losses.classification_loss(outputs, batch, kinds=kinds, regression="l1")
  assert float(l1["loss/value"]) == pytest.approx(0.5)
