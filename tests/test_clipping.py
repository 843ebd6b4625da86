"""cmjax.clipping.clip_by_global_norm against optax.clip_by_global_norm."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cmjax import clipping


def _tree(seed, scale):
  rng = np.random.default_rng(seed)
  return {
    "w": jnp.asarray(rng.normal(size=(7, 5)) * scale, jnp.float32),
    "b": jnp.asarray(rng.normal(size=(5,)) * scale, jnp.float32),
    "nested": {"k": jnp.asarray(rng.normal(size=(3, 2, 4)) * scale, jnp.float32)},
  }


@pytest.mark.parametrize("scale", [1e-3, 0.1, 10.0, 1e3])
@pytest.mark.parametrize("max_norm", [0.5, 1.0, 4.0])
def test_matches_optax(scale, max_norm):
  grads = _tree(int(scale * 1000) % 97, scale)
  ours, _ = clipping.clip_by_global_norm(max_norm).update(grads, optax.EmptyState())
  ref, _ = optax.clip_by_global_norm(max_norm).update(grads, optax.EmptyState())
  chex.assert_trees_all_close(ours, ref, rtol=1e-6, atol=0)
  norm = float(optax.tree.norm(ours))
  assert norm <= max_norm * (1 + 1e-6)
  if float(optax.tree.norm(grads)) < max_norm:  # below the threshold: untouched
    chex.assert_trees_all_equal(ours, grads)


def test_jitted_inside_chain_matches_optax():
  grads, params = _tree(1, 5.0), _tree(2, 1.0)

  def run(clip):
    tx = optax.chain(clip(1.0), optax.adamw(1e-2, weight_decay=0.1))
    state = tx.init(params)
    p = params
    for _ in range(3):
      u, state = jax.jit(tx.update)(grads, state, p)
      p = optax.apply_updates(p, u)
    return p

  chex.assert_trees_all_close(
    run(clipping.clip_by_global_norm), run(optax.clip_by_global_norm), rtol=1e-5, atol=1e-7
  )


def test_non_finite_norm_propagates():
  grads = _tree(3, 1.0)
  grads["b"] = grads["b"].at[0].set(jnp.nan)
  ours, _ = clipping.clip_by_global_norm(1.0).update(grads, optax.EmptyState())
  assert not np.isfinite(np.asarray(ours["w"])).all()


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_rejects_non_positive_max_norm(bad):
  with pytest.raises(ValueError, match="grad_clip_norm must be > 0"):
    clipping.clip_by_global_norm(bad)
