"""Per-group learning rates and `unfreeze_at`: a group is bitwise unchanged
before its step, then follows its own warmup and decay over the remaining
steps; bad values are refused by name."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from cmjax import optimizer


def _optim(**group):
  return ml_collections.ConfigDict(
    dict(
      name="sgd",
      lr=0.1,
      momentum=0.0,
      weight_decay=0.0,
      warmup_steps=0,
      min_lr_ratio=0.0,
      grad_clip_norm=None,
      groups=[("tower/.*", group)],
    )
  )


def _learning_rates(optim, total=8):
  """The learning rate each group saw at each step (SGD without momentum:
  update = -lr * gradient, with a gradient of ones)."""
  tx, _ = optimizer.make_optimizer(optim, total_steps=total, warmup_steps=0)
  params = {"tower": {"w": jnp.ones((3,))}, "head": {"w": jnp.ones((3,))}}
  state = tx.init(params)
  grads = {"tower": {"w": jnp.ones((3,))}, "head": {"w": jnp.ones((3,))}}
  seen = {"tower": [], "head": []}
  for _ in range(total):
    updates, state = tx.update(grads, state, params)
    new = optax.apply_updates(params, updates)
    for g in seen:
      seen[g].append(float(params[g]["w"][0] - new[g]["w"][0]))
      if seen[g][-1] == 0.0:
        np.testing.assert_array_equal(new[g]["w"], params[g]["w"])
    params = new
  return seen


def test_unfreeze_at_holds_a_group_then_runs_its_own_schedule():
  seen = _learning_rates(_optim(unfreeze_at=3, lr_mult=2.0))
  assert seen["tower"][:3] == [0.0, 0.0, 0.0]
  own = optimizer._schedule(0.2, 8 - 3, 0, 0.0)  # pylint: disable=protected-access
  np.testing.assert_allclose(seen["tower"][3:], [float(own(t)) for t in range(5)], rtol=1e-5)
  base = optimizer._schedule(0.1, 8, 0, 0.0)  # pylint: disable=protected-access
  np.testing.assert_allclose(seen["head"], [float(base(t)) for t in range(8)], rtol=1e-5)


@pytest.mark.parametrize("value", [-1, 8, 2.5, True])
def test_bad_unfreeze_steps_are_named(value):
  with pytest.raises(ValueError, match=r"unfreeze_at=.*expected a step in \[0, 8\)"):
    optimizer.make_optimizer(_optim(unfreeze_at=value), total_steps=8, warmup_steps=0)
