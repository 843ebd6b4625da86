"""Attention (cross, dropout) and Transformer options (remat, scan, param_dtype)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmjax.models.attention import MultiHeadAttention
from cmjax.models.transformer import Transformer, stack_block_params
from tests.test_attention import assert_matches_flax

B, Q, KV, D, DKV, H = 3, 5, 7, 16, 12, 4
W, L = 16, 6
TINY = dict(depth=2, num_heads=2, mlp_dim=32)


def _cross_inputs(seed=0):
  kq, kkv = jax.random.split(jax.random.PRNGKey(seed))
  return jax.random.normal(kq, (B, Q, D)), jax.random.normal(kkv, (B, KV, DKV))


def _key_mask():
  lengths = np.array([KV, 3, 1])
  return jnp.asarray(np.arange(KV)[None, :] < lengths[:, None])


def _init(model, *args):
  """Jitted init (much faster than eager op-by-op on CPU); boxed variables."""
  return jax.jit(model.init)(jax.random.PRNGKey(1), *args)


def _apply(model, **kw):
  """Jitted `model.apply(variables, *args, **kw)` with static keyword args."""
  return jax.jit(lambda v, *a, rngs=None: model.apply(v, *a, rngs=rngs, **kw))


def _flax_ref(**kw):
  return nn.MultiHeadDotProductAttention(num_heads=H, qkv_features=D, out_features=D, **kw)


@pytest.mark.parametrize("masked", [False, True])
def test_cross_attention_other_kv_width_matches_flax(masked):
  xq, xkv = _cross_inputs()
  ours = MultiHeadAttention(num_heads=H)
  params = nn.meta.unbox(ours.init(jax.random.PRNGKey(1), xq, xkv))
  ref = _flax_ref()
  ref_params = ref.init(jax.random.PRNGKey(2), xq, xkv)
  assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, ref_params)
  assert params["params"]["key"]["kernel"].shape == (DKV, H, D // H)
  assert params["params"]["query"]["kernel"].shape == (D, H, D // H)
  key_mask = _key_mask() if masked else None
  got = assert_matches_flax(ours, ref, params, xq, xkv, key_mask)
  assert got.shape == (B, Q, D)
  if masked:  # keys behind the mask are invisible
    moved = ours.apply(
      params, xq, xkv + jnp.where(key_mask[..., None], 0.0, 50.0), key_mask=key_mask
    )
    np.testing.assert_allclose(moved, got, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mask_kind", ["keys", "causal"])
def test_attention_dropout_matches_flax(mask_kind):
  xq, xkv = _cross_inputs(1)
  if mask_kind == "causal":
    xkv = jax.random.normal(jax.random.PRNGKey(5), (B, Q, DKV))
  ours = MultiHeadAttention(num_heads=H, dropout_rate=0.3)
  params = nn.meta.unbox(ours.init(jax.random.PRNGKey(1), xq, xkv))
  ref = _flax_ref(dropout_rate=0.3, broadcast_dropout=False)
  key_mask = _key_mask() if mask_kind == "keys" else None
  ref_mask = None
  if mask_kind == "keys":
    ref_mask = nn.make_attention_mask(jnp.ones((B, Q), bool), key_mask)
  elif mask_kind == "causal":
    ref_mask = nn.make_causal_mask(jnp.ones((B, Q)))
  rngs = {"dropout": jax.random.PRNGKey(7)}
  got = ours.apply(
    params, xq, xkv, key_mask=key_mask, causal=mask_kind == "causal", deterministic=False, rngs=rngs
  )
  want = ref.apply(params, xq, xkv, mask=ref_mask, deterministic=False, rngs=rngs)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  # Deterministic: same as a module without dropout; and dropout does change it.
  det = ours.apply(params, xq, xkv, key_mask=key_mask, causal=mask_kind == "causal")
  plain = MultiHeadAttention(num_heads=H).apply(
    params, xq, xkv, key_mask=key_mask, causal=mask_kind == "causal"
  )
  np.testing.assert_allclose(det, plain, rtol=1e-6, atol=1e-6)
  assert np.abs(np.asarray(got - det)).max() > 1e-3


def test_attention_dropout_needs_rng_and_varies_with_it():
  xq, xkv = _cross_inputs()
  ours = MultiHeadAttention(num_heads=H, dropout_rate=0.5)
  params = ours.init(jax.random.PRNGKey(1), xq, xkv)
  with pytest.raises(Exception, match="dropout"):
    ours.apply(params, xq, xkv, deterministic=False)
  a, b = (
    ours.apply(params, xq, xkv, deterministic=False, rngs={"dropout": jax.random.PRNGKey(s)})
    for s in (0, 1)
  )
  assert np.abs(np.asarray(a - b)).max() > 1e-3


def _x_mask(seed=0):
  x = jax.random.normal(jax.random.PRNGKey(seed), (2, L, W))
  mask = jnp.asarray(np.arange(L)[None] < np.array([[L], [3]]))
  return x, mask


_PARAMS = {}


def _unrolled_params():
  """Params of the default (unrolled) `Transformer(**TINY)`, built once."""
  if not _PARAMS:
    _PARAMS.update(nn.meta.unbox(_init(Transformer(**TINY), *_x_mask())))
  return _PARAMS


def test_default_transformer_param_tree_unchanged():
  params = _unrolled_params()
  shapes = jax.tree.map(jnp.shape, params["params"])
  assert sorted(shapes) == ["block0", "block1", "ln_final"]
  assert sorted(shapes["block0"]) == ["attn", "ln_attn", "ln_mlp", "mlp"]
  assert shapes["block0"]["attn"]["query"]["kernel"] == (W, 2, W // 2)
  assert shapes["block0"]["mlp"]["fc1"]["kernel"] == (W, 32)


@pytest.mark.parametrize("policy", [True, "dots"])
def test_remat_equals_plain_outputs_and_grads(policy):
  x, mask = _x_mask()
  one = {**TINY, "depth": 1}
  plain = Transformer(**one, dropout_rate=0.2)
  remat = Transformer(**one, dropout_rate=0.2, remat=policy)
  params = nn.meta.unbox(_init(plain, x, mask))
  remat_shapes = jax.tree.map(
    jnp.shape, nn.meta.unbox(jax.eval_shape(remat.init, jax.random.PRNGKey(1), x, mask))
  )
  assert remat_shapes == jax.tree.map(jnp.shape, params)
  rngs = {"dropout": jax.random.PRNGKey(3)}

  def loss(model, p, xx):
    # Dropout on and a causal mask: the hardest case for recomputation.
    y = model.apply(p, xx, mask, deterministic=False, causal=True, rngs=rngs)
    return jnp.sum(jnp.where(mask[..., None], y, 0.0) ** 2)

  grad = jax.jit(jax.value_and_grad(loss, argnums=(1, 2)), static_argnums=0)
  (lp, gp), (lr, gr) = grad(plain, params, x), grad(remat, params, x)
  np.testing.assert_allclose(lr, lp, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(gr), jax.tree.leaves(gp)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(gp))


def test_remat_policies_recompute_what_they_say():
  """Matmuls in the lowered backward pass: 'full' recomputes all forward ones;
  'dots' keeps the weight matmuls' results and recomputes only the attention
  ones (which have batch dimensions)."""
  x, mask = _x_mask()
  one = {**TINY, "depth": 1}
  params = nn.meta.unbox(_init(Transformer(**one), x, mask))

  def dots(remat):
    model = Transformer(**one, remat=remat)
    loss = lambda p: jnp.sum(model.apply(p, x, mask) ** 2)
    return jax.jit(jax.grad(loss)).lower(params).as_text().count("dot_general")

  none, full, saved = dots(False), dots("full"), dots("dots")
  assert none < saved < full, (none, full, saved)
  with pytest.raises(ValueError, match="remat='selective'"):
    dots("selective")


def test_scan_equals_unrolled_with_stacked_params():
  x, mask = _x_mask()
  unrolled = Transformer(**TINY)
  scanned = Transformer(**TINY, scan=True, remat=True)
  params = _unrolled_params()
  stacked = {"params": stack_block_params(params["params"], TINY["depth"])}
  scan_init = nn.meta.unbox(jax.eval_shape(scanned.init, jax.random.PRNGKey(1), x, mask))
  assert jax.tree.map(jnp.shape, scan_init) == jax.tree.map(jnp.shape, stacked)
  assert stacked["params"]["blocks"]["block"]["attn"]["query"]["kernel"].shape == (2, W, 2, W // 2)

  # Outputs (causal, so that the mask matters more) and gradients agree.
  def loss(model, p):
    y = model.apply(p, x, mask, causal=True)
    return jnp.sum(jnp.where(mask[..., None], y, 0.0) ** 2), y

  grad = jax.jit(jax.grad(loss, argnums=1, has_aux=True), static_argnums=0)
  g_unrolled, want = grad(unrolled, params)
  g_scan, got = grad(scanned, stacked)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  want_g = stack_block_params(g_unrolled["params"], TINY["depth"])
  for a, b in zip(jax.tree.leaves(g_scan["params"]), jax.tree.leaves(want_g)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  # Scan without remat: same forward pass.
  got_plain_scan = _apply(Transformer(**TINY, scan=True), causal=True)(stacked, x, mask)
  np.testing.assert_allclose(got_plain_scan, want, rtol=1e-5, atol=1e-5)


def test_scan_respects_masks_and_dropout():
  x, mask = _x_mask()
  t = Transformer(**TINY, scan=True, dropout_rate=0.5)
  v = {"params": stack_block_params(_unrolled_params()["params"], TINY["depth"])}
  apply = _apply(t)
  y = apply(v, x, mask)
  # Padded tokens do not influence valid ones.
  y2 = apply(v, x.at[1, 3:].set(50.0), mask)
  np.testing.assert_allclose(y2[1, :3], y[1, :3], atol=1e-5)
  # Causal: token t does not see tokens > t.
  apply_causal = _apply(t, causal=True)
  yc = apply_causal(v, x, mask)
  yc2 = apply_causal(v, x.at[0, 4:].set(-7.0), mask)
  np.testing.assert_allclose(yc2[0, :4], yc[0, :4], atol=1e-5)
  assert np.abs(np.asarray(yc2[0, 4:] - yc[0, 4:])).max() > 1e-3
  # Dropout is active, and differs between layers (rngs are split per layer).
  yd = _apply(t, deterministic=False)(v, x, mask, rngs={"dropout": jax.random.PRNGKey(2)})
  assert np.abs(np.asarray(yd - y)).max() > 1e-3


def test_scan_params_have_leading_unnamed_layer_axis():
  x, mask = _x_mask()
  v = jax.eval_shape(Transformer(**TINY, scan=True).init, jax.random.PRNGKey(1), x, mask)
  specs = nn.get_partition_spec(v)["params"]
  block = specs["blocks"]["block"]
  assert tuple(block["attn"]["query"]["kernel"]) == (None, "embed", "heads", "head_dim")
  assert tuple(block["mlp"]["fc1"]["kernel"]) == (None, "embed", "mlp")
  assert tuple(block["ln_attn"]["scale"]) == (None, "embed")
  assert tuple(specs["ln_final"]["scale"]) == ("embed",)


@pytest.mark.parametrize("scan", [True])
def test_param_dtype(scan):
  x, mask = _x_mask()
  t = Transformer(**TINY, scan=scan, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
  v = nn.meta.unbox(_init(t, x, mask))
  assert {p.dtype for p in jax.tree.leaves(v)} == {jnp.dtype(jnp.bfloat16)}
  assert _apply(t)(v, x, mask).dtype == jnp.bfloat16
  v32 = nn.meta.unbox(
    jax.eval_shape(
      Transformer(**TINY, scan=scan, dtype=jnp.bfloat16).init, jax.random.PRNGKey(1), x, mask
    )
  )
  assert {p.dtype for p in jax.tree.leaves(v32)} == {jnp.dtype(jnp.float32)}
