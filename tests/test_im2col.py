"""`conv_as_matmul` against `lax.conv_general_dilated`: values and gradients."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmjax.models.layers import conv_as_matmul

DN = ("NHWC", "HWIO", "NHWC")


@pytest.mark.parametrize(
  "kernel,strides,padding,size",
  [
    ((3, 3), (2, 2), ((1, 1), (1, 1)), 8),  # the ViT conv stem
    ((3, 3), (1, 1), ((1, 1), (1, 1)), 7),
    ((2, 3), (2, 1), ((0, 1), (2, 0)), 9),  # uneven kernel, strides and padding
  ],
)
def test_matches_lax_convolution_and_its_gradients(kernel, strides, padding, size):
  kx, kw, kc = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(kx, (2, size, size + 1, 3))
  w = jax.random.normal(kw, kernel + (3, 5))

  def lax_conv(x, w):
    return jax.lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=DN)

  def ours(x, w):
    return conv_as_matmul(x, w, strides, padding, dimension_numbers=DN)

  want = lax_conv(x, w)
  np.testing.assert_allclose(ours(x, w), want, rtol=1e-5, atol=1e-5)
  cotangent = jax.random.normal(kc, want.shape)
  grads = lambda f: jax.grad(lambda x, w: jnp.sum(f(x, w) * cotangent), (0, 1))(x, w)
  for got, expected in zip(grads(ours), grads(lax_conv)):
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_is_a_drop_in_for_flax_conv():
  x = jax.random.normal(jax.random.key(1), (2, 8, 8, 3))
  plain = nn.Conv(4, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
  fast = nn.Conv(
    4, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)), conv_general_dilated=conv_as_matmul
  )
  params = plain.init(jax.random.key(2), x)
  assert jax.tree.map(jnp.shape, fast.init(jax.random.key(2), x)) == jax.tree.map(jnp.shape, params)
  np.testing.assert_allclose(fast.apply(params, x), plain.apply(params, x), rtol=1e-5, atol=1e-5)


def test_rejects_what_it_does_not_implement():
  x, w = jnp.zeros((1, 4, 4, 2)), jnp.zeros((3, 3, 2, 2))
  with pytest.raises(ValueError, match="rhs_dilation"):
    conv_as_matmul(x, w, (1, 1), ((1, 1), (1, 1)), rhs_dilation=(2, 2))
  with pytest.raises(ValueError, match="feature_group_count"):
    conv_as_matmul(x, w, (1, 1), ((1, 1), (1, 1)), feature_group_count=2)
