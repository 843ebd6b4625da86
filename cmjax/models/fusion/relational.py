"""Relational fusion: a relation network, FiLM, and a graph network over tokens.

These reason over the *objects* modality's tokens (image patches or feature
map cells, by default the first modality) conditioned on the others (the
question, typed or spoken), the way visual question answering models do:

* `relation_network` (Santoro et al. 2017): an MLP g over every pair of
  object tokens and the condition, summed over pairs, then an MLP f;
* `film` (Perez et al. 2018): residual blocks over the object tokens whose
  normalised features are scaled and shifted per channel by the condition;
* `graph_network`: message passing over a graph whose nodes are the tokens of
  every modality: edges between neighbouring image tokens (the patch grid) and
  neighbouring words, and learned cross-modal edges (attention from each node
  to the other modalities' nodes).

Each records what it related for pictures (flax's 'intermediates'
collection; nothing is stored unless the caller asks for that collection):
`relation_scores` `[B, n, n]` (norm of g per pair), `pool_map` `[B, n]`
(FiLM: share of channels whose max-pool picked each token), and
`<m>_cross_edges` `[B, n_m, N]` (graph network: the last layer's attention
from each valid token of modality m to the other modalities' tokens, mean
over heads, zero rows for padding; e.g. `text_cross_edges` shows which patches
each word looked at).
"""

from __future__ import annotations

import math
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cmjax.models.fusion.common import (
  Features,
  check_features,
  masked_softmax,
  presence,
  register_fusion,
  zero_missing,
)
from cmjax.models.fusion.pooled import FusionBase
from cmjax.models.fusion.tokens import TokenFusionBase
from cmjax.models.layers import dense, layer_norm
from cmjax.models.pooling import masked_mean


def token_coordinates(n: int) -> np.ndarray:
  """float32 `[n, 2]`: where each of n tokens is, in [-1, 1].

  A perfect square n > 1 is a row-major grid (patch tokens): (x, y) of each
  cell; otherwise a sequence: (position, 0).
  """
  side = math.isqrt(n)
  if n > 1 and side * side == n:
    rows, cols = np.divmod(np.arange(n), side)
    return (np.stack([cols, rows], 1) / (side - 1) * 2 - 1).astype(np.float32)
  pos = np.arange(n) / max(n - 1, 1) * 2 - 1
  return np.stack([pos, np.zeros(n)], 1).astype(np.float32)


class ConditionedFusionBase(FusionBase):
  """Object tokens of one modality, conditioned on the pooled vectors of the rest.

  Attributes:
    objects: the modality whose tokens are related ('' = the first one).
    hidden: width of the relational layers (0 = `width`).
    coordinates: append each object token's (x, y) place (`token_coordinates`)
      to it, as both the relation network and FiLM papers tag their
      feature-map cells.
  """

  objects: str = ""
  hidden: int = 0
  coordinates: bool = True

  @property
  def objects_modality(self) -> str:
    m = self.objects or self.modalities[0]
    if m not in self.modalities:
      raise ValueError(f"fusion objects={m!r} is not one of the modalities {list(self.modalities)}")
    return m

  def inputs(self, features: Features, present) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(object tokens `[B, n, d (+ 2 coordinates)]` zeroed where invalid, valid bool `[B, n]`,
    condition `[B, c]`: the other modalities' pooled vectors, zero where missing;
    c = 0 with one modality)."""
    check_features(self.modalities, features, self.min_modalities)
    om = self.objects_modality
    out = features[om]
    valid = out.mask.astype(jnp.bool_) & presence(features, present, om)[:, None]
    tokens = out.tokens.astype(self.dtype)
    if self.coordinates:
      coords = jnp.asarray(token_coordinates(tokens.shape[1]), self.dtype)
      tokens = jnp.concatenate([tokens, jnp.broadcast_to(coords, tokens.shape[:2] + (2,))], -1)
    tokens = jnp.where(valid[..., None], tokens, 0.0)
    cond = [
      zero_missing(features[m].pooled.astype(self.dtype), presence(features, present, m))
      for m in self.modalities
      if m != om
    ]
    batch = tokens.shape[0]
    condition = jnp.concatenate(cond, axis=-1) if cond else jnp.zeros((batch, 0), self.dtype)
    return tokens, valid, condition

  @property
  def features_width(self) -> int:
    return self.hidden or self.width


@register_fusion("relation_network")
class RelationNetworkFusion(ConditionedFusionBase):
  """RN(O, q) = f( 1/n^2 Σ_{i,j} g([o_i, o_j, q]) ) over valid token pairs.

  g's first layer is linear in the concatenation, so it is computed as
  A o_i + B o_j + C q (no `[B, n, n, 2d + c]` tensor); the rest of g runs on
  `[B, n, n, hidden]`. The sum over pairs is scaled by the fixed 1/n^2 (n the
  token count) rather than by the count of valid pairs, so it still grows with
  the number of objects present (the paper's plain sum, kept at a trainable
  scale for 64+ tokens).

  Attributes:
    g_layers, f_layers: depths of the two MLPs (ReLU).
  """

  g_layers: int = 3
  f_layers: int = 2

  @nn.compact
  def __call__(self, features: Features, present=None, *, train: bool = False) -> jax.Array:
    del train
    tokens, valid, condition = self.inputs(features, present)
    h = self.features_width
    left = dense(h, "g_left", self.dtype)(tokens)  # carries g's first bias
    right = dense(h, "g_right", self.dtype, use_bias=False)(tokens)
    x = left[:, :, None] + right[:, None, :]  # [B, n, n, h]
    if condition.shape[-1]:
      x = x + dense(h, "g_condition", self.dtype, use_bias=False)(condition)[:, None, None]
    x = nn.relu(x)
    for layer in range(1, self.g_layers):
      x = nn.relu(dense(h, f"g{layer}", self.dtype)(x))
    pairs = valid[:, :, None] & valid[:, None, :]
    x = jnp.where(pairs[..., None], x, 0.0)
    self.sow("intermediates", "relation_scores", jnp.linalg.norm(x.astype(jnp.float32), axis=-1))
    n = tokens.shape[1]
    y = jnp.sum(x, axis=(1, 2)) / float(n * n)
    for layer in range(self.f_layers - 1):
      y = nn.relu(dense(h, f"f{layer}", self.dtype)(y))
    return dense(self.width, "out", self.dtype)(y)


def film(x: jax.Array, gamma_delta: jax.Array, beta: jax.Array) -> jax.Array:
  """Feature-wise linear modulation: (1 + Δγ) ⊙ x + β.

  x: `[B, n, d]`; gamma_delta, beta: `[B, d]` (one per example and channel).
  Δγ rather than γ is predicted so that a zero condition is the identity.
  """
  return (1.0 + gamma_delta[:, None, :]) * x + beta[:, None, :]


@register_fusion("film")
class FiLMFusion(ConditionedFusionBase):
  """FiLM residual blocks over the object tokens, then a max-pool classifier input.

  Per block: r = ReLU(W1 x); y = LN(W2 r) (no learned scale/shift: FiLM is
  it); x = x + ReLU(FiLM(y | condition)). Tokens are treated as 1x1 feature
  map cells. Output: Dense(masked max over tokens of ReLU(W x)).

  Attributes:
    num_blocks: FiLM-ed residual blocks.
  """

  num_blocks: int = 2

  @nn.compact
  def __call__(self, features: Features, present=None, *, train: bool = False) -> jax.Array:
    del train
    tokens, valid, condition = self.inputs(features, present)
    h = self.features_width
    batch = tokens.shape[0]
    x = nn.relu(dense(h, "stem", self.dtype)(tokens))
    for b in range(self.num_blocks):
      r = nn.relu(dense(h, f"block{b}_in", self.dtype)(x))
      y = dense(h, f"block{b}_out", self.dtype)(r)
      y = nn.LayerNorm(use_scale=False, use_bias=False, dtype=self.dtype, name=f"block{b}_ln")(y)
      if condition.shape[-1]:
        gb = dense(2 * h, f"block{b}_film", self.dtype)(condition)
      else:
        gb = jnp.zeros((batch, 2 * h), self.dtype)
      y = film(y, gb[:, :h], gb[:, h:])
      x = jnp.where(valid[..., None], x + nn.relu(y), 0.0)
    x = nn.relu(dense(h, "head", self.dtype)(x))
    x = jnp.where(valid[..., None], x, -jnp.inf)
    pooled = jnp.max(x, axis=1)
    winners = jax.nn.one_hot(jnp.argmax(x, axis=1), x.shape[1], axis=1)  # [B, n, h]
    any_valid = jnp.any(valid, axis=1)
    self.sow("intermediates", "pool_map", jnp.mean(winners, axis=-1) * any_valid[:, None])
    pooled = jnp.where(any_valid[:, None], pooled, 0.0)
    return dense(self.width, "out", self.dtype)(pooled)


def grid_neighbours(n: int, chain: bool = False) -> tuple[np.ndarray, np.ndarray]:
  """Static neighbour table of n tokens: (index int32 `[n, K]`, ok bool `[n, K]`).

  A perfect square n > 1 is read as a row-major sqrt(n) x sqrt(n) grid (patch
  tokens) with 4-neighbours (K = 4); otherwise, or with `chain`, the tokens form
  a sequence and each has its previous and next token (K = 2). Missing
  neighbours (edges of the grid or sequence) have ok False and index 0.
  """
  side = math.isqrt(n)
  if not chain and n > 1 and side * side == n:
    rows, cols = np.divmod(np.arange(n), side)
    steps = ((-1, 0), (1, 0), (0, -1), (0, 1))
    r = rows[:, None] + np.array([s[0] for s in steps])
    c = cols[:, None] + np.array([s[1] for s in steps])
    ok = (r >= 0) & (r < side) & (c >= 0) & (c < side)
    index = np.where(ok, r * side + c, 0)
  else:
    index = np.arange(n)[:, None] + np.array([-1, 1])
    ok = (index >= 0) & (index < n)
    index = np.where(ok, index, 0)
  return index.astype(np.int32), ok


def neighbour_messages(
  src: jax.Array, dst: jax.Array, index: np.ndarray, ok: np.ndarray, valid: jax.Array
) -> jax.Array:
  """Mean over each node's valid neighbours j of GELU(dst_i + src_j).

  src, dst: `[B, n, w]` (the edge network's first layer, split by end);
  index, ok: the neighbour table of `grid_neighbours` (`[n, K]`); valid: bool
  `[B, n]`. Returns `[B, n, w]`, zeros for a node without valid neighbours.
  """
  nbr_ok = jnp.asarray(ok)[None] & valid[:, index]  # [B, n, K]
  msg = jnp.where(nbr_ok[..., None], nn.gelu(dst[:, :, None] + src[:, index]), 0.0)
  return jnp.sum(msg, axis=2) / jnp.maximum(jnp.sum(nbr_ok, axis=2), 1)[..., None]


@register_fusion("graph_network")
class GraphNetworkFusion(TokenFusionBase):
  """Message passing over every modality's tokens as graph nodes.

  Nodes: each modality's tokens projected to `width`, plus a modality
  embedding. Per layer and node i of modality m:
    local  = mean over i's valid neighbours j (grid for the objects modality
             when its token count is a square, sequence otherwise) of
             GELU(A h_i + B h_j), then a linear map: an edge network;
    cross  = attention from h_i to the valid nodes of the other modalities
             (the learned cross-modal edges; `num_heads` heads);
    h_i   += MLP(LN([h_i, local, cross])).
  Output: the mean over present modalities of each one's masked node mean.

  Attributes:
    objects: the modality read as a grid ('' = the first one); the others are
      sequences.
    coordinates: add a linear map of each objects token's (x, y) place to its
      node (`token_coordinates`).
  """

  objects: str = ""
  coordinates: bool = True
  min_modalities: ClassVar[int] = 1

  @nn.compact
  def __call__(self, features: Features, present=None, *, train: bool = False) -> jax.Array:
    del train
    x, valid, flags = self.projected_tokens(features, present)
    om = self.objects or self.modalities[0]
    if om not in self.modalities:
      raise ValueError(
        f"fusion objects={om!r} is not one of the modalities {list(self.modalities)}"
      )
    embed = self.param(
      "modality_embedding",
      nn.with_logical_partitioning(nn.initializers.normal(0.02), (None, "embed")),
      (len(self.modalities), self.width),
    )
    x = {m: x[m] + embed[i] for i, m in enumerate(self.modalities)}
    if self.coordinates:
      coords = jnp.asarray(token_coordinates(x[om].shape[1]), self.dtype)
      x[om] = x[om] + dense(self.width, "coordinates", self.dtype)(coords)[None]
    x = {m: jnp.where(valid[m][..., None], x[m], 0.0) for m in self.modalities}
    tables = {m: grid_neighbours(x[m].shape[1], chain=m != om) for m in self.modalities}
    heads = self.num_heads
    if self.width % heads:
      raise ValueError(f"graph_network width={self.width} must be a multiple of num_heads={heads}")
    for layer in range(self.depth):
      new = {}
      for m in self.modalities:
        index, ok = tables[m]
        h = layer_norm(f"{m}_ln{layer}", self.dtype, jnp.float32)(x[m])
        src = dense(self.width, f"{m}_edge_src{layer}", self.dtype, use_bias=False)(h)
        dst = dense(self.width, f"{m}_edge_dst{layer}", self.dtype)(h)
        local = neighbour_messages(src, dst, index, ok, valid[m])
        local = dense(self.width, f"{m}_edge_out{layer}", self.dtype)(local)
        parts = [h, local]
        others = [o for o in self.modalities if o != m]
        if others:
          cross, weights = self._cross(f"{m}_cross{layer}", h, x, valid, others)
          parts.append(cross)
          if layer == self.depth - 1:
            self.sow(
              "intermediates", f"{m}_cross_edges", jnp.where(valid[m][..., None], weights, 0.0)
            )
        u = layer_norm(f"{m}_ln_update{layer}", self.dtype, jnp.float32)(
          jnp.concatenate(parts, axis=-1)
        )
        u = nn.gelu(dense(self.mlp_dim, f"{m}_update_in{layer}", self.dtype)(u))
        u = dense(self.width, f"{m}_update_out{layer}", self.dtype)(u)
        new[m] = jnp.where(valid[m][..., None], x[m] + u, 0.0)
      x = new
    pooled = [
      masked_mean(layer_norm(f"{m}_ln_out", self.dtype, jnp.float32)(x[m]), valid[m])
      for m in self.modalities
    ]
    return self.mean_over_present(pooled, flags)

  def _cross(self, name, h, x, valid, others) -> tuple[jax.Array, jax.Array]:
    """Attention of nodes h `[B, n, w]` to the other modalities' nodes:
    (messages `[B, n, w]`, weights `[B, n, N]` averaged over heads)."""
    keys = jnp.concatenate([x[o] for o in others], axis=1)
    key_valid = jnp.concatenate([valid[o] for o in others], axis=1)  # [B, N]
    keys = layer_norm(f"{name}_ln_kv", self.dtype, jnp.float32)(keys)
    heads, d = self.num_heads, self.width // self.num_heads
    q = dense(self.width, f"{name}_q", self.dtype)(h).reshape(h.shape[:2] + (heads, d))
    k = dense(self.width, f"{name}_k", self.dtype)(keys).reshape(keys.shape[:2] + (heads, d))
    v = dense(self.width, f"{name}_v", self.dtype)(keys).reshape(keys.shape[:2] + (heads, d))
    logits = jnp.einsum("bnhd,bkhd->bhnk", q, k).astype(jnp.float32) / math.sqrt(d)
    w = masked_softmax(logits, key_valid[:, None, None, :], axis=-1)  # zeros if none valid
    out = jnp.einsum("bhnk,bkhd->bnhd", w.astype(self.dtype), v).reshape(h.shape)
    return dense(self.width, f"{name}_out", self.dtype)(out), jnp.mean(w, axis=1)
