"""Every fusion method: contract (shapes, missing modalities, padding, gradients)
and, where the method has a closed form, equality with that formula."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmjax.models.encoders import EncoderOutput
from cmjax.models.fusion import get_fusion_cls, known_fusions

B, WIDTH = 3, 8
DIMS = {"image": 6, "text": 5, "audio": 7}
TOKENS = {"image": 4, "text": 6, "audio": 5}
SMALL = {
  "late": dict(num_classes=4),
  "bilinear": dict(rank_dim=4),
  "tensor": dict(tensor_dim=3),
  "low_rank_tensor": dict(rank=3),
  "cross_attention": dict(num_heads=2, mlp_dim=16),
  "joint_transformer": dict(num_heads=2, mlp_dim=16),
  "bottleneck": dict(num_heads=2, mlp_dim=16, depth=2, fusion_layer=1, num_bottlenecks=2),
  "relation_network": dict(hidden=6),
  "film": dict(hidden=6),
  "graph_network": dict(num_heads=2, mlp_dim=16, depth=2),
}
MODALITY_SETS = {2: ("image", "text"), 3: ("image", "text", "audio")}


def _features(modalities, seed=0):
  rng = np.random.default_rng(seed)
  out = {}
  for m in modalities:
    mask = np.ones((B, TOKENS[m]), bool)
    mask[1, TOKENS[m] // 2 :] = False  # row 1 is padded
    out[m] = EncoderOutput(
      tokens=jnp.asarray(rng.normal(size=(B, TOKENS[m], DIMS[m])), jnp.float32),
      pooled=jnp.asarray(rng.normal(size=(B, DIMS[m])), jnp.float32),
      mask=jnp.asarray(mask),
    )
  return out


def _build(name, modalities):
  fusion = get_fusion_cls(name)(modalities=modalities, width=WIDTH, **SMALL.get(name, {}))
  feats = _features(modalities)
  variables = nn.meta.unbox(fusion.init(jax.random.key(0), feats))
  return fusion, variables, feats


def _replace(feats, modality, rows, seed, where="all"):
  """Features with new random values for `modality` in `rows` (tokens where `where`)."""
  new = _features(feats, seed)[modality]
  old = feats[modality]
  row = np.zeros((B,), bool)
  row[rows] = True
  tok_sel = row[:, None] & (~np.asarray(old.mask) if where == "padding" else True)
  tokens = jnp.where(tok_sel[..., None], new.tokens, old.tokens)
  pooled = old.pooled if where == "padding" else jnp.where(row[:, None], new.pooled, old.pooled)
  return dict(feats, **{modality: EncoderOutput(tokens, pooled, old.mask)})


CASES = [(name, k) for name in known_fusions() for k in (2, 3)]


@pytest.mark.parametrize("name, k", CASES)
def test_contract(name, k):
  modalities = MODALITY_SETS[k]
  fusion, v, feats = _build(name, modalities)
  apply = jax.jit(fusion.apply)
  missing = modalities[-1]
  present = {m: jnp.array([True, True, True]) for m in modalities}
  present[missing] = jnp.array([True, False, True])  # row 1 lacks the last modality
  out = apply(v, feats, present)
  width = SMALL[name]["num_classes"] if fusion.outputs_logits else WIDTH
  assert out.shape == (B, width) and np.all(np.isfinite(out))

  # A missing modality has no influence on its row...
  moved = apply(v, _replace(feats, missing, [1], seed=5), present)
  np.testing.assert_allclose(moved[1], out[1], atol=1e-5)
  # ...but does on rows where it is present.
  assert np.max(np.abs(moved[0] - out[0])) < 1e-6  # row 0 untouched by row 1's change
  moved0 = apply(v, _replace(feats, missing, [0], seed=6), present)
  assert np.max(np.abs(moved0[0] - out[0])) > 1e-4, "present modality has no effect"
  # Padding tokens never matter.
  padded = apply(v, _replace(feats, modalities[0], [1], seed=7, where="padding"), present)
  np.testing.assert_allclose(padded, out, atol=1e-5)
  # present=None means every modality present.
  np.testing.assert_allclose(
    apply(v, feats, None), apply(v, feats, {m: jnp.ones((B,), bool) for m in modalities}), atol=1e-6
  )


@pytest.mark.parametrize("name", known_fusions())
def test_gradients_reach_every_parameter(name):
  modalities = MODALITY_SETS[3]
  fusion, v, feats = _build(name, modalities)
  leaves, treedef = jax.tree_util.tree_flatten(v["params"])
  keys = jax.random.split(jax.random.key(1), len(leaves))
  params = treedef.unflatten(
    [p + 0.1 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)]
  )
  grads = jax.jit(jax.grad(lambda p: jnp.sum(fusion.apply({"params": p}, feats) ** 2)))(params)
  flat = jax.tree_util.tree_flatten_with_path(grads)[0]
  assert all(np.all(np.isfinite(g)) for _, g in flat)
  zero = [jax.tree_util.keystr(k) for k, g in flat if not np.any(g)]
  assert not zero, f"no gradient reaches {zero}"


def _with_one(x):
  return np.concatenate([x, np.ones(x.shape[:-1] + (1,))], -1)


@pytest.mark.parametrize("k", [2, 3])
def test_low_rank_tensor_fusion_equals_tensor_fusion_with_the_summed_weight(k):
  modalities = MODALITY_SETS[k]
  fusion, v, feats = _build("low_rank_tensor", modalities)
  p = jax.tree_util.tree_map(np.asarray, v["params"])
  z = [_with_one(np.asarray(feats[m].pooled, np.float64)) for m in modalities]
  factors = [p[f"{m}_factor"].astype(np.float64) for m in modalities]
  # Full weight tensor W[i, j, (l,) o] = sum_r lambda_r W_1[r, i, o] W_2[r, j, o] (...).
  letters = "ijl"[:k]
  w_full = np.einsum(
    ",".join(f"r{c}o" for c in letters) + ",r->" + letters + "o", *factors, p["rank_weights"]
  )
  outer = np.einsum(",".join(f"b{c}" for c in letters) + "->b" + letters, *z)
  want = np.einsum(f"b{letters},{letters}o->bo", outer, w_full) + p["bias"]
  np.testing.assert_allclose(fusion.apply(v, feats), want, rtol=1e-4, atol=1e-4)


def test_tensor_fusion_is_a_linear_map_of_the_outer_product():
  modalities = MODALITY_SETS[2]
  fusion, v, feats = _build("tensor", modalities)
  p = jax.tree_util.tree_map(np.asarray, v["params"])
  u = [
    _with_one(np.asarray(feats[m].pooled) @ p[f"{m}_proj"]["kernel"] + p[f"{m}_proj"]["bias"])
    for m in modalities
  ]
  outer = np.einsum("bi,bj->bij", *u).reshape(B, -1)
  want = outer @ p["out"]["kernel"] + p["out"]["bias"]
  np.testing.assert_allclose(fusion.apply(v, feats), want, rtol=1e-5, atol=1e-5)


def test_gated_fusion_of_two_is_the_gmu_sigmoid_gate():
  modalities = MODALITY_SETS[2]
  fusion, v, feats = _build("gated", modalities)
  p = jax.tree_util.tree_map(np.asarray, v["params"])
  x = [np.asarray(feats[m].pooled) for m in modalities]
  h = [np.tanh(xi @ p[f"{m}_proj"]["kernel"]) for xi, m in zip(x, modalities)]
  g = (np.concatenate(x, -1) @ p["gate"]["kernel"] + p["gate"]["bias"]).reshape(B, 2, WIDTH)
  z = 1 / (1 + np.exp(-(g[:, 0] - g[:, 1])))
  np.testing.assert_allclose(
    fusion.apply(v, feats), z * h[0] + (1 - z) * h[1], rtol=1e-5, atol=1e-5
  )


def test_late_fusion_averages_present_classifiers():
  modalities = MODALITY_SETS[3]
  fusion, v, feats = _build("late", modalities)
  p = jax.tree_util.tree_map(np.asarray, v["params"])
  logits = {
    m: np.asarray(feats[m].pooled) @ p[f"{m}_classifier"]["kernel"] + p[f"{m}_classifier"]["bias"]
    for m in modalities
  }
  np.testing.assert_allclose(fusion.apply(v, feats), sum(logits.values()) / 3, atol=1e-5)
  present = {
    "image": jnp.array([True, False, False]),
    "text": jnp.array([True, True, False]),
    "audio": jnp.array([True, True, True]),
  }
  out = fusion.apply(v, feats, present)
  np.testing.assert_allclose(out[1], (logits["text"][1] + logits["audio"][1]) / 2, atol=1e-5)
  np.testing.assert_allclose(out[2], logits["audio"][2], atol=1e-5)


def test_unknown_fusion_lists_the_known_ones():
  with pytest.raises(ValueError, match="unknown fusion 'sum'.*'gated'"):
    get_fusion_cls("sum")
