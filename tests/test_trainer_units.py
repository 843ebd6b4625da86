"""Trainer pieces that need no training run: batch checks, optimiser, config checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmjax import experiment, optimizer
from cmjax.data import datasets
from cmjax.data import spec as spec_lib
from tests import helpers


@pytest.fixture
def tiny():
  return helpers.load_config("shapes_contrastive.py", "tiny")


def _batch(spec):
  return {k: np.zeros(v.shape, v.dtype) for k, v in spec.items()}


def test_check_batch_accepts_the_pipeline_spec_and_names_bad_keys(tiny):
  spec = datasets.build(tiny.data).spec.batch(tiny.batch_size)
  good = _batch(spec)
  spec_lib.check_batch(good, spec)
  missing = dict(good)
  del missing["text_mask"]
  with pytest.raises(ValueError, match="missing key.*text_mask"):
    spec_lib.check_batch(missing, spec)
  wrong_shape = dict(good, image=np.zeros((16, 32, 32, 3), np.uint8))
  with pytest.raises(ValueError, match="'image' has shape"):
    spec_lib.check_batch(wrong_shape, spec)
  wrong_dtype = dict(good, audio=good["audio"].astype(np.float64))
  with pytest.raises(ValueError, match="'audio' has dtype"):
    spec_lib.check_batch(wrong_dtype, spec)


def test_weight_decay_skips_scalars_and_vectors(tiny):
  tx, schedule = optimizer.make_optimizer(tiny.optim, total_steps=10, warmup_steps=2)
  params = {"w": jnp.ones((3, 3)), "b": jnp.ones((3,)), "logit_scale": jnp.ones(())}
  zero = jax.tree_util.tree_map(jnp.zeros_like, params)
  state = tx.init(params)
  for _ in range(3):  # past warmup, so the learning rate is not zero
    updates, state = tx.update(zero, state, params)
  assert float(jnp.abs(updates["w"]).max()) > 0  # decayed
  assert float(jnp.abs(updates["b"]).max()) == 0
  assert float(jnp.abs(updates["logit_scale"])) == 0
  assert float(schedule(0)) == 0.0 and float(schedule(2)) == pytest.approx(tiny.optim.lr)


def test_sgd_follows_the_momentum_and_l2_formula(tiny):
  tiny.optim.update(name="sgd", lr=0.1, weight_decay=0.01, grad_clip_norm=None)
  tiny.optim.momentum = 0.5
  tx, schedule = optimizer.make_optimizer(tiny.optim, total_steps=100, warmup_steps=0)
  rng = np.random.default_rng(0)
  params = {
    "w": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32),
    "b": jnp.asarray(rng.normal(size=(2,)), jnp.float32),
  }
  grads = [
    jax.tree_util.tree_map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)
    for _ in range(2)
  ]
  state = tx.init(params)
  p, ref, velocity = params, {k: np.asarray(v) for k, v in params.items()}, None
  for step, g in enumerate(grads):
    updates, state = tx.update(g, state, p)
    p = jax.tree_util.tree_map(lambda a, u: a + u, p, updates)
    # v <- g + wd * w (kernels only) + momentum * v;  w <- w - lr_t * v
    g = {"w": np.asarray(g["w"]) + 0.01 * ref["w"], "b": np.asarray(g["b"])}
    velocity = g if velocity is None else {k: g[k] + 0.5 * velocity[k] for k in g}
    ref = {k: ref[k] - float(schedule(step)) * velocity[k] for k in ref}
  for k in ref:
    np.testing.assert_allclose(np.asarray(p[k]), ref[k], rtol=1e-6, atol=1e-6)


def test_unknown_optimizer_is_refused(tiny):
  tiny.optim.name = "lion"
  with pytest.raises(ValueError, match="optim.name='lion'.*'sgd'"):
    optimizer.make_optimizer(tiny.optim, total_steps=5, warmup_steps=0)


def test_warmup_longer_than_training_is_refused(tiny):
  with pytest.raises(ValueError, match="warmup"):
    optimizer.make_optimizer(tiny.optim, total_steps=5, warmup_steps=10)


def test_batch_size_must_divide_over_devices(tiny):
  tiny.batch_size = 12
  with pytest.raises(ValueError, match="batch_size=12 is not divisible by the 8"):
    experiment.validate_config(tiny, num_devices=8)


def test_unknown_objective_is_refused(tiny):
  tiny.objectives.contrastive.type = "triplet"
  with pytest.raises(
    ValueError, match="unknown objective 'triplet'.*config.objectives.contrastive.type"
  ):
    experiment.validate_config(tiny, num_devices=1)


def test_an_old_style_loss_entry_says_what_replaced_it(tiny):
  del tiny.objectives
  tiny.loss = dict(name="clip")
  with pytest.raises(ValueError, match="config.loss was replaced by config.objectives"):
    experiment.validate_config(tiny, num_devices=1)


def test_resuming_with_another_length_is_announced(tmp_path):
  from cmjax import metric_writer, run_config  # pylint: disable=g-import-not-at-top

  assert run_config.length_change_note(str(tmp_path), 300) is None  # no run there yet
  metric_writer.write_json(str(tmp_path / "config.json"), {"total_steps": 300})
  assert run_config.length_change_note(str(tmp_path), 300) is None
  note = run_config.length_change_note(str(tmp_path), 1000)
  assert "started for 300 steps and now goes to 1000" in note
