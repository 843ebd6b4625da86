"""Our MultiHeadAttention against flax.linen.MultiHeadDotProductAttention."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmjax.models.attention import MultiHeadAttention

B, Q, KV, D, H = 3, 5, 7, 16, 4


def _inputs(seed=0):
  kq, kkv = jax.random.split(jax.random.PRNGKey(seed))
  return (jax.random.normal(kq, (B, Q, D)), jax.random.normal(kkv, (B, KV, D)))


def _key_mask():
  lengths = np.array([KV, 3, 1])  # includes a row with a single valid key
  return jnp.asarray(np.arange(KV)[None, :] < lengths[:, None])


def _both(xq, xkv, implementation=None):
  ours = MultiHeadAttention(num_heads=H, implementation=implementation)
  ref = nn.MultiHeadDotProductAttention(num_heads=H, qkv_features=D, out_features=D)
  our_vars = nn.meta.unbox(ours.init(jax.random.PRNGKey(1), xq, xkv))
  ref_vars = ref.init(jax.random.PRNGKey(2), xq, xkv)
  # Same tree structure and shapes, so the reference can take our parameters.
  assert jax.tree.map(jnp.shape, our_vars) == jax.tree.map(jnp.shape, ref_vars)
  return ours, ref, our_vars


def assert_matches_flax(ours, ref, params, xq, xkv, key_mask):
  """Our attention equals flax's with the same params; returns our output."""
  got = ours.apply(params, xq, xkv, key_mask=key_mask)
  ref_mask = (
    None if key_mask is None else nn.make_attention_mask(jnp.ones(xq.shape[:2], bool), key_mask)
  )
  want = ref.apply(params, xq, xkv, mask=ref_mask)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  return got


@pytest.mark.parametrize("implementation", [None, "xla"])
@pytest.mark.parametrize("masked", [False, True])
def test_matches_flax_reference(masked, implementation):
  """Ours (`attend`, or jax.nn.dot_product_attention's XLA kernel) equals flax's."""
  xq, xkv = _inputs()
  ours, ref, params = _both(xq, xkv, implementation)
  got = assert_matches_flax(ours, ref, params, xq, xkv, _key_mask() if masked else None)
  assert got.shape == (B, Q, D)


def test_mask_matters_and_masked_keys_are_ignored():
  xq, xkv = _inputs()
  ours, _, params = _both(xq, xkv)
  key_mask = _key_mask()
  masked = ours.apply(params, xq, xkv, key_mask=key_mask)
  unmasked = ours.apply(params, xq, xkv)
  # Row 0 has all keys valid: identical; row 1 has padding: must differ.
  np.testing.assert_allclose(masked[0], unmasked[0], rtol=1e-6, atol=1e-6)
  assert np.abs(masked[1] - unmasked[1]).max() > 1e-3
  # Changing padded keys must not change the output.
  noise = jnp.where(key_mask[..., None], 0.0, 100.0)
  moved = ours.apply(params, xq, xkv + noise, key_mask=key_mask)
  np.testing.assert_allclose(masked, moved, rtol=1e-5, atol=1e-5)


def test_causal_matches_flax_reference():
  x, _ = _inputs()
  ours, ref, params = _both(x, x)
  got = ours.apply(params, x, causal=True)
  want = ref.apply(params, x, mask=nn.make_causal_mask(jnp.ones((B, Q))))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  # With padding as well, and through the gradient.
  mask = _key_mask()[:, :Q]
  ref_mask = nn.combine_masks(
    nn.make_causal_mask(jnp.ones((B, Q))), nn.make_attention_mask(jnp.ones((B, Q), bool), mask)
  )
  grad = lambda f: jax.grad(lambda p: jnp.sum(jnp.sin(f(p))))(params)
  got = grad(lambda p: ours.apply(p, x, key_mask=mask, causal=True))
  want = grad(lambda p: ref.apply(p, x, mask=ref_mask))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), got, want)


def test_params_have_logical_axes():
  xq, xkv = _inputs()
  variables = MultiHeadAttention(num_heads=H).init(jax.random.PRNGKey(0), xq, xkv)
  specs = nn.get_partition_spec(variables)["params"]
  assert tuple(specs["query"]["kernel"]) == ("embed", "heads", "head_dim")
  assert tuple(specs["out"]["kernel"]) == ("heads", "head_dim", "embed")


@pytest.mark.parametrize(
  "kernel_init,bias_init",
  [
    (nn.initializers.lecun_normal(), nn.initializers.zeros_init()),
    (nn.initializers.normal(0.3), nn.initializers.normal(0.1)),
  ],
)
def test_fused_self_attention_initialises_as_flax(kernel_init, bias_init):
  """Self-attention builds q/k/v from one matmul over its own parameters; they
  must still initialise exactly as flax's separate DenseGeneral projections
  (same names, shapes, fan-in and rng path)."""
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 5, 16))
  ours = MultiHeadAttention(4, kernel_init=kernel_init, bias_init=bias_init).init(
    jax.random.PRNGKey(0), x
  )
  ref = nn.MultiHeadDotProductAttention(4, kernel_init=kernel_init, bias_init=bias_init).init(
    jax.random.PRNGKey(0), x
  )
  ours, ref = nn.unbox(ours), nn.unbox(ref)
  assert jax.tree.structure(ours) == jax.tree.structure(ref)
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref)):
    np.testing.assert_array_equal(a, b)


def test_self_attention_matches_flax_reference():
  """Self-attention (inputs_kv=None: q, k, v from one fused matmul) equals flax's."""
  xq, _ = _inputs(3)
  ours = MultiHeadAttention(num_heads=H)
  ref = nn.MultiHeadDotProductAttention(num_heads=H, qkv_features=D, out_features=D)
  params = nn.meta.unbox(ours.init(jax.random.PRNGKey(1), xq))
  np.testing.assert_allclose(ours.apply(params, xq), ref.apply(params, xq), rtol=1e-5, atol=1e-5)
