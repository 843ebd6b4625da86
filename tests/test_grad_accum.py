"""Gradient accumulation: which micro-batch methods reproduce the full-batch step."""

import jax
import numpy as np
import pytest

from cmjax import grad_accum, sharding, steps
from cmjax.data import pipeline
from tests import helpers


def _one_step(config, k, method="mean"):
  """Loss and SGD-updated params (lr 1: params - grads) after one step of k micro-batches."""
  config = config.copy_and_resolve_references()
  config.grad_accum_steps, config.grad_accum = k, method
  config.optim.update(name="sgd", lr=1.0, weight_decay=0.0, grad_clip_norm=None)
  mesh = sharding.make_mesh({}, devices=jax.devices()[:1])
  _, _, init, step = helpers.build_step(config, mesh)
  batch = next(iter(pipeline.train_dataset(config)))
  state, metrics = step(init(), sharding.global_batch(batch, mesh))
  return float(metrics["loss"]), jax.device_get(state.params)


def _max_diff(a, b) -> float:
  return max(
    jax.tree_util.tree_leaves(
      jax.tree_util.tree_map(lambda x, y: float(np.max(np.abs(x - y))), a, b)
    )
  )


# Image + text keeps the compiles short; the audio tower changes nothing here.
def test_mean_accumulation_equals_the_full_batch_for_classification():
  config = helpers.load_config("shapes_classify.py", "tiny,modalities=image+text")
  loss1, params1 = _one_step(config, 1)
  loss4, params4 = _one_step(config, 4)
  assert abs(loss1 - loss4) <= 1e-5 * abs(loss1)
  assert _max_diff(params1, params4) <= 1e-5


def test_cached_embeddings_make_the_contrastive_step_exact_and_mean_does_not():
  config = helpers.load_config("shapes_contrastive.py", "tiny")
  config.data.speech = False
  loss1, params1 = _one_step(config, 1)
  loss4, params4 = _one_step(config, 4, "cached_embeddings")
  assert abs(loss1 - loss4) <= 1e-5 * abs(loss1)
  assert _max_diff(params1, params4) <= 1e-5
  # Micro-batches of 4 see 3 negatives instead of 15: a lower, different loss.
  loss_mean, params_mean = _one_step(config, 4, "mean")
  assert loss_mean < loss1 - 0.5, (loss_mean, loss1)
  assert _max_diff(params1, params_mean) > 1e-3


def test_bad_accumulation_settings_are_refused():
  with pytest.raises(ValueError, match="does not divide the batch of 16"):
    grad_accum.split_microbatches({"image": np.zeros((16, 2))}, 3)
  config = helpers.load_config("shapes_classify.py", "tiny")
  config.grad_accum_steps, config.grad_accum = 2, "gradcache"
  with pytest.raises(ValueError, match="grad_accum='gradcache'"):
    steps.StandardStep(config, None, None, None, None)


def test_microbatch_i_takes_every_kth_row():
  batch = {"x": np.arange(8)}
  np.testing.assert_array_equal(
    grad_accum.split_microbatches(batch, 4)["x"], [[0, 4], [1, 5], [2, 6], [3, 7]]
  )
