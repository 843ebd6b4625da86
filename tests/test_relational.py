"""Relational fusion methods against direct formulas: the relation network's
pair sum, the graph network's neighbour table and messages, FiLM."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmjax.models.encoders import EncoderOutput
from cmjax.models.fusion import get_fusion_cls, relational


def _features(rng, b=2, n=4, d=5, words=3, dq=6):
  mask = np.ones((b, n), bool)
  mask[1, 3:] = False
  return {
    "image": EncoderOutput(
      tokens=jnp.asarray(rng.normal(size=(b, n, d)), jnp.float32),
      pooled=jnp.asarray(rng.normal(size=(b, d)), jnp.float32),
      mask=jnp.asarray(mask),
    ),
    "text": EncoderOutput(
      tokens=jnp.asarray(rng.normal(size=(b, words, dq)), jnp.float32),
      pooled=jnp.asarray(rng.normal(size=(b, dq)), jnp.float32),
      mask=jnp.ones((b, words), bool),
    ),
  }


def test_relation_network_is_f_of_the_mean_of_g_over_every_valid_pair():
  rng = np.random.default_rng(0)
  feats = _features(rng)
  rn = relational.RelationNetworkFusion(
    modalities=("image", "text"), width=7, hidden=8, g_layers=2, f_layers=2, coordinates=True
  )
  v = nn.meta.unbox(rn.init(jax.random.key(0), feats))
  p = jax.tree.map(np.asarray, v["params"])
  # Perturb biases so that none is zero (they start at zero).
  p = jax.tree.map(lambda a: a + 0.1 * rng.normal(size=a.shape), p)
  out = np.asarray(rn.apply({"params": p}, feats))

  relu = lambda a: np.maximum(a, 0.0)  # noqa: E731
  # Each token tagged with its place on the 2x2 grid.
  xy = np.array([[-1, -1], [1, -1], [-1, 1], [1, 1]], np.float32)
  tokens = np.concatenate([np.asarray(feats["image"].tokens), np.broadcast_to(xy, (2, 4, 2))], -1)
  mask = np.asarray(feats["image"].mask)
  q = np.asarray(feats["text"].pooled)
  # g's first layer on the concatenation [o_i, o_j, q], written out.
  w1 = np.concatenate(
    [p["g_left"]["kernel"], p["g_right"]["kernel"], p["g_condition"]["kernel"]], axis=0
  )
  expected = []
  for b in range(tokens.shape[0]):
    n = tokens.shape[1]
    total = np.zeros(8)
    for i in range(n):
      for j in range(n):
        if not (mask[b, i] and mask[b, j]):
          continue
        x = relu(np.concatenate([tokens[b, i], tokens[b, j], q[b]]) @ w1 + p["g_left"]["bias"])
        total += relu(x @ p["g1"]["kernel"] + p["g1"]["bias"])
    y = relu((total / n**2) @ p["f0"]["kernel"] + p["f0"]["bias"])
    expected.append(y @ p["out"]["kernel"] + p["out"]["bias"])
  np.testing.assert_allclose(out, np.stack(expected), rtol=1e-4, atol=1e-5)


def test_grid_and_sequence_neighbours():
  index, ok = relational.grid_neighbours(9)
  nbrs = lambda i: sorted(int(j) for j, k in zip(index[i], ok[i]) if k)  # noqa: E731
  assert nbrs(4) == [1, 3, 5, 7]  # the centre of a 3x3 grid
  assert nbrs(0) == [1, 3] and nbrs(8) == [5, 7] and nbrs(2) == [1, 5]
  index, ok = relational.grid_neighbours(5)  # not a square: a sequence
  assert nbrs(0) == [1] and nbrs(2) == [1, 3] and nbrs(4) == [3]
  index, ok = relational.grid_neighbours(9, chain=True)
  assert nbrs(4) == [3, 5]


def test_neighbour_messages_average_over_valid_neighbours_only():
  rng = np.random.default_rng(1)
  src, dst = (jnp.asarray(rng.normal(size=(2, 9, 3)), jnp.float32) for _ in range(2))
  valid = np.ones((2, 9), bool)
  valid[1, [1, 5]] = False
  index, ok = relational.grid_neighbours(9)
  out = np.asarray(relational.neighbour_messages(src, dst, index, ok, jnp.asarray(valid)))
  gelu = lambda a: np.asarray(jax.nn.gelu(a))  # noqa: E731
  for b in range(2):
    for i in range(9):
      js = [int(j) for j, k in zip(index[i], ok[i]) if k and valid[b, j]]
      want = np.mean([gelu(dst[b, i] + src[b, j]) for j in js], axis=0) if js else np.zeros(3)
      np.testing.assert_allclose(out[b, i], want, rtol=1e-5, atol=1e-6)


def test_film_scales_and_shifts_each_channel():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(2, 4, 3)).astype(np.float32)
  g, b = rng.normal(size=(2, 2, 3)).astype(np.float32)
  out = np.asarray(relational.film(jnp.asarray(x), jnp.asarray(g), jnp.asarray(b)))
  for e in range(2):
    for c in range(3):
      np.testing.assert_allclose(out[e, :, c], (1 + g[e, c]) * x[e, :, c] + b[e, c], rtol=1e-6)


def test_relation_pictures_are_recorded_on_request():
  feats = _features(np.random.default_rng(3))
  for name, key, shape in (
    ("relation_network", "relation_scores", (2, 4, 4)),
    ("film", "pool_map", (2, 4)),
    ("graph_network", "image_cross_edges", (2, 4, 3)),
    ("graph_network", "text_cross_edges", (2, 3, 4)),
  ):
    fusion = get_fusion_cls(name)(modalities=("image", "text"), width=8)
    v = nn.meta.unbox(fusion.init(jax.random.key(0), feats))
    out, state = fusion.apply(v, feats, mutable=["intermediates"])
    (picture,) = state["intermediates"][key]
    assert out.shape == (2, 8) and picture.shape == shape, (name, picture.shape)
    picture = np.asarray(picture)
    if name == "relation_network":  # padded tokens relate to nothing
      assert np.all(picture[1, 3:] == 0) and np.all(picture[1, :, 3:] == 0)
      assert np.all(picture[0] > 0)
    if name == "film":  # shares of channels: sum to 1 over valid tokens
      np.testing.assert_allclose(picture.sum(1), 1.0, rtol=1e-6)
      assert np.all(picture[1, 3:] == 0)
    if name == "graph_network":  # each valid token's attention sums to 1, padding's is 0
      rows = np.asarray(feats[key.split("_")[0]].mask, np.float32)
      np.testing.assert_allclose(picture.sum(-1), rows, rtol=1e-5)
    if key == "text_cross_edges":  # and never reaches a padded patch
      assert np.all(picture[1, :, 3:] == 0) and np.all(picture[0] > 0)


def test_patch_maps_and_their_overlay():
  from cmjax.evaluators import relation_maps  # pylint: disable=g-import-not-at-top

  edges = np.zeros((1, 3, 4), np.float32)
  edges[0, :2, 1] = 1.0  # two words look at patch 1, the third is padding
  scores = np.ones((1, 4, 4), np.float32)
  key, m = relation_maps.patch_map(
    {"fusion": {"text_cross_edges": (edges,), "relation_scores": (scores,)}}
  )
  assert key == "text_cross_edges"
  np.testing.assert_allclose(m, [[0, 1, 0, 0]])
  key, m = relation_maps.patch_map({"fusion": {"relation_scores": (scores,)}})
  np.testing.assert_allclose(m, [[0.25] * 4])
  with pytest.raises(ValueError, match="records none of"):
    relation_maps.patch_map({"fusion": {"something": (scores,)}})
  img = np.full((8, 8, 3), 100, np.uint8)
  assert np.array_equal(relation_maps.overlay(img, np.full((2, 2), 0.25)), img)
  lit = relation_maps.overlay(img, np.array([[0.0, 1.0], [0.0, 0.0]]))
  changed = np.any(lit != img, axis=-1)
  assert changed[:4, 4:].all() and not changed[4:].any() and not changed[:4, :4].any()
