"""cmjax.models.layers.Dense / flat_matmul: the 2-D matmul form of dense layers equals flax's."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmjax.models.layers import Dense, flat_matmul


@pytest.mark.parametrize("shape", [(5, 7), (2, 5, 7), (2, 3, 4, 7)])
def test_dense_equals_flax_dense_in_params_output_and_gradients(shape):
  x = jax.random.normal(jax.random.PRNGKey(1), shape)
  ours, ref = Dense(6, name="d"), nn.Dense(6, name="d")
  params = ours.init(jax.random.PRNGKey(0), x)
  chex.assert_trees_all_equal(params, ref.init(jax.random.PRNGKey(0), x))

  def loss(module, p, x):
    return jnp.sum(jnp.sin(module.apply(p, x)))

  chex.assert_trees_all_close(ours.apply(params, x), ref.apply(params, x), rtol=1e-5, atol=1e-6)
  assert ours.apply(params, x).shape == shape[:-1] + (6,)
  g_ours = jax.grad(loss, argnums=(1, 2))(ours, params, x)
  g_ref = jax.grad(loss, argnums=(1, 2))(ref, params, x)
  chex.assert_trees_all_close(g_ours, g_ref, rtol=1e-5, atol=1e-5)


def test_dense_multiplies_as_one_2d_matmul():
  x = jnp.ones((2, 5, 7))
  module = Dense(6)
  params = module.init(jax.random.PRNGKey(0), x)
  jaxpr = jax.make_jaxpr(jax.grad(lambda p: jnp.sum(module.apply(p, x))))(params)
  dots = [e for e in jaxpr.eqns if e.primitive.name == "dot_general"]
  assert dots, jaxpr
  for eqn in dots:  # forward and weight gradient: operands of rank 2 only
    assert all(v.aval.ndim == 2 for v in eqn.invars), eqn


@pytest.mark.parametrize("contract", [1, 2])
def test_flat_matmul_equals_tensordot(contract):
  rng = np.random.default_rng(0)
  x = rng.standard_normal((3, 4, 5, 6)).astype(np.float32)
  kernel = rng.standard_normal(x.shape[4 - contract :] + (7, 2)).astype(np.float32)
  got = flat_matmul(jnp.asarray(x), jnp.asarray(kernel), contract)
  np.testing.assert_allclose(got, np.tensordot(x, kernel, contract), rtol=1e-4, atol=1e-4)


def test_flat_matmul_rejects_mismatched_axes():
  with pytest.raises(ValueError, match="contracted axes"):
    flat_matmul(jnp.ones((2, 3, 4)), jnp.ones((3, 4, 5)), contract=1)
