"""Contrastive losses of a batch split over devices, never forming the `[B, B]` matrix.

Call these inside `jax.shard_map` with the batch axis split over `axis_name`
(a mesh axis or a tuple of them, e.g. `('data', 'fsdp')`): `x` and `y` are this
device's rows `[b, D]` of a global batch of `B = b * devices` rows, in the
order of the batch sharding. Each returns the loss of the *global* batch (the
same value on every device), equal to `losses.clip_loss` / `losses.siglip_loss`
of the gathered batch, with equal gradients (tested on 8 devices).

Memory. The plain losses build `[B, B]` logits (`[b, B]` per device once XLA
splits the rows). Here logits only ever exist `chunk` columns at a time, and
every chunk is recomputed in the backward pass instead of being stored, so the
per-device memory is `O(B * D + b * chunk)`: linear in the per-device batch.

- `clip_loss_sharded`: every device gathers all embeddings (`[B, D]`, cheap
  next to the model) and computes the softmax cross entropy of its own rows,
  the log-sum-exp accumulated chunk by chunk.
- `siglip_loss_sharded`: the sigmoid loss is a plain sum over pairs, so no
  gather is needed: the `y` blocks travel around the ring of devices
  (`ppermute`), and each device adds the pairs of its `x` rows with the block
  it holds, as in the SigLIP paper's chunked implementation.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from cmjax.losses import MAX_LOGIT_SCALE

_NEG = -1e30  # stands in for -inf in running maxima (exp(_NEG - m) == 0, no NaN)


def _filled_like(v: jax.Array, shape, value: float) -> jax.Array:
  """`value` in `shape`, typed like `v`: inside shard_map a scan's initial carry
  must vary over the same mesh axes as the carry the body returns."""
  return jnp.full(shape, value, jnp.float32) + 0.0 * v.reshape(-1)[0]


def _rows(x, y, valid):
  """float32 `x`, `y` and the bool `[b]` rows that take part (all, typed like
  `x` as `_filled_like` says, when `valid` is None)."""
  chex.assert_equal_shape([x, y])
  x, y = x.astype(jnp.float32), y.astype(jnp.float32)
  ok = _filled_like(x, x.shape[:1], 1.0) > 0.0 if valid is None else valid.astype(jnp.bool_)
  return x, y, ok


def _column_chunks(keys: jax.Array, valid: jax.Array, chunk: int):
  """`[n, D]`, `[n]` -> `[n_chunks, c, D]`, `[n_chunks, c]`, padding with invalid rows."""
  n = keys.shape[0]
  c = max(1, min(chunk, n))
  pad = (-n) % c
  keys = jnp.pad(keys, ((0, pad), (0, 0)))
  valid = jnp.pad(valid, (0, pad))
  return keys.reshape(-1, c, keys.shape[-1]), valid.reshape(-1, c)


def row_logsumexp(
  q: jax.Array, keys: jax.Array, keys_valid: jax.Array, scale: jax.Array, chunk: int
) -> jax.Array:
  """`logsumexp_j (scale * q_i . k_j)` over valid keys, `[b]`, in column chunks.

  Args:
    q: `[b, D]` query rows.
    keys: `[n, D]`.
    keys_valid: bool `[n]`: keys that take part.
    scale: scalar.
    chunk: columns computed at once; each chunk is recomputed in the backward
      pass (`jax.checkpoint`), so only `[b]`-sized running values are stored.
  """
  chex.assert_rank([q, keys], 2)
  key_chunks, valid_chunks = _column_chunks(keys, keys_valid, chunk)

  @jax.checkpoint
  def step(carry, inputs):
    running_max, running_sum = carry
    k, v = inputs
    logits = scale * (q @ k.T)  # [b, c]
    new_max = jnp.maximum(running_max, jnp.max(jnp.where(v[None], logits, _NEG), axis=1))
    terms = jnp.where(v[None], jnp.exp(logits - new_max[:, None]), 0.0)
    running_sum = running_sum * jnp.exp(running_max - new_max) + jnp.sum(terms, axis=1)
    return (new_max, running_sum), None

  b = q.shape[0]
  init = (_filled_like(q, (b,), _NEG), _filled_like(q, (b,), 0.0))
  (running_max, running_sum), _ = jax.lax.scan(step, init, (key_chunks, valid_chunks))
  # A row with no valid key gets a finite value; callers give it zero weight.
  return running_max + jnp.log(jnp.maximum(running_sum, 1e-30))


def row_max(q: jax.Array, keys: jax.Array, keys_valid: jax.Array, chunk: int) -> jax.Array:
  """`max_j q_i . k_j` over valid keys, `[b]`, in column chunks (no gradient)."""
  key_chunks, valid_chunks = _column_chunks(keys, keys_valid, chunk)

  def step(best, inputs):
    k, v = inputs
    return jnp.maximum(best, jnp.max(jnp.where(v[None], q @ k.T, _NEG), axis=1)), None

  best, _ = jax.lax.scan(step, _filled_like(q, q.shape[:1], _NEG), (key_chunks, valid_chunks))
  return jax.lax.stop_gradient(best)


def retrieval_accuracy_sharded(
  x: jax.Array, y: jax.Array, valid: jax.Array | None = None, *, axis_name, chunk: int = 256
):
  """In-batch top-1 accuracy of x->y and y->x over the global batch (two scalars).

  A row counts as right when its partner scores at least as high as every
  valid candidate of the global batch (`losses.retrieval_accuracy` of the
  gathered batch, up to exact ties).
  """
  x, y, ok = _rows(x, y, valid)
  x_all = jax.lax.all_gather(x, axis_name, tiled=True)
  y_all = jax.lax.all_gather(y, axis_name, tiled=True)
  ok_all = jax.lax.all_gather(ok, axis_name, tiled=True)
  positive = jnp.sum(x * y, axis=-1)
  w = ok.astype(jnp.float32)
  count = jnp.maximum(jax.lax.psum(jnp.sum(w), axis_name), 1.0)
  hits = [
    jax.lax.psum(jnp.sum(w * (positive >= row_max(q, k, ok_all, chunk))), axis_name)
    for q, k in ((x, y_all), (y, x_all))
  ]
  return hits[0] / count, hits[1] / count


def clip_loss_sharded(
  x: jax.Array,
  y: jax.Array,
  logit_scale: jax.Array,
  valid: jax.Array | None = None,
  *,
  axis_name,
  chunk: int = 256,
) -> jax.Array:
  """Symmetric softmax InfoNCE of the global batch from this device's rows.

  Args:
    x, y: `[b, D]` this device's embeddings (row i of x pairs with row i of y).
    logit_scale: scalar log inverse temperature (clipped at log 100), replicated.
    valid: optional bool `[b]`: pairs that exist; others are neither anchors
      nor negatives, on any device.
    axis_name: the mesh axis (or tuple of axes) the batch is split over.
    chunk: columns of the logits computed at once.

  Returns:
    scalar, equal to `losses.clip_loss` of the gathered batch.
  """
  x, y, ok = _rows(x, y, valid)
  scale = jnp.exp(jnp.minimum(jnp.asarray(logit_scale, jnp.float32), MAX_LOGIT_SCALE))
  x_all = jax.lax.all_gather(x, axis_name, tiled=True)  # [B, D]
  y_all = jax.lax.all_gather(y, axis_name, tiled=True)
  ok_all = jax.lax.all_gather(ok, axis_name, tiled=True)
  positive = scale * jnp.sum(x * y, axis=-1)  # [b]: the local rows' own pairs
  ce_xy = row_logsumexp(x, y_all, ok_all, scale, chunk) - positive
  ce_yx = row_logsumexp(y, x_all, ok_all, scale, chunk) - positive
  w = ok.astype(jnp.float32)
  total = jax.lax.psum(jnp.sum(w * (ce_xy + ce_yx)), axis_name)
  count = jax.lax.psum(jnp.sum(w), axis_name)
  return 0.5 * total / jnp.maximum(count, 1.0)


def _sigmoid_block_sum(x, y, x_ok, y_ok, scale, bias, own_block, chunk):
  """Sum of `log_sigmoid(z_ij (scale x_i.y_j + bias))` over valid pairs of one block.

  `z_ij = +1` for i == j when `own_block` (the block holds x's own partners),
  else -1. Column chunks are recomputed in the backward pass.
  """
  y_chunks, ok_chunks = _column_chunks(y, y_ok, chunk)
  c = y_chunks.shape[1]
  rows = jnp.arange(x.shape[0])

  @jax.checkpoint
  def step(total, inputs):
    k, v, start = inputs
    logits = scale * (x @ k.T) + bias  # [b, c]
    positive = own_block & (rows[:, None] == start + jnp.arange(c)[None, :])
    terms = jax.nn.log_sigmoid(jnp.where(positive, logits, -logits))
    return total + jnp.sum(jnp.where(x_ok[:, None] & v[None, :], terms, 0.0)), None

  starts = jnp.arange(y_chunks.shape[0]) * c
  total, _ = jax.lax.scan(step, _filled_like(x, (), 0.0), (y_chunks, ok_chunks, starts))
  return total


def siglip_loss_sharded(
  x: jax.Array,
  y: jax.Array,
  logit_scale: jax.Array,
  logit_bias: jax.Array,
  valid: jax.Array | None = None,
  *,
  axis_name,
  chunk: int = 256,
) -> jax.Array:
  """Pairwise sigmoid loss of the global batch, `y` blocks rotating over the devices.

  Args:
    x, y: `[b, D]` this device's embeddings.
    logit_scale: scalar log t; logit_bias: scalar b (both replicated).
    valid: optional bool `[b]`: only pairs with both rows valid count, and the
      normaliser is the global number of valid rows.
    axis_name: the mesh axis (or tuple of axes) the batch is split over.
    chunk: columns of a block computed at once.

  Returns:
    scalar, equal to `losses.siglip_loss` of the gathered batch.
  """
  x, y, ok = _rows(x, y, valid)
  scale = jnp.exp(jnp.asarray(logit_scale, jnp.float32))
  bias = jnp.asarray(logit_bias, jnp.float32)
  n = jax.lax.axis_size(axis_name)
  ring = [(i, (i + 1) % n) for i in range(n)]

  def visit(carry, t):
    total, block, block_ok = carry
    total = total + _sigmoid_block_sum(x, block, ok, block_ok, scale, bias, t == 0, chunk)
    block, block_ok = (jax.lax.ppermute(a, axis_name, ring) for a in (block, block_ok))
    return (total, block, block_ok), None

  (total, _, _), _ = jax.lax.scan(visit, (_filled_like(x, (), 0.0), y, ok), jnp.arange(n))
  total = jax.lax.psum(total, axis_name)
  count = jax.lax.psum(jnp.sum(ok.astype(jnp.float32)), axis_name)
  return -total / jnp.maximum(count, 1.0)
