"""Greedy and beam-search decoding under `jit`, with a fixed maximum length.

Both drive a step function

  step_fn(seqs int32 [N, max_len], i, state) -> (logits float [N, vocab], state)

giving the next-token logits of position i + 1 from the tokens at positions
0..i (`seqs[:, :i + 1]`; later positions hold padding). `state` is any pytree
whose arrays have the `N` rows on their leading axis (scalars are shared): a
key/value cache, which then only reads `seqs[:, i]`, or just the encoder
memory, recomputing the whole prefix each step (the uncached reference).
Sequences start with `bos_id`; after `eos_id` a sequence is padded with
`pad_id`, which is never chosen before (its logit is untrained: padding is
no target). Every loop is a `lax.fori_loop`: one compilation for any input.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

StepFn = Callable[[jax.Array, jax.Array, Any], tuple[jax.Array, Any]]


def _start(rows: int, max_len: int, bos_id: int, pad_id: int) -> jax.Array:
  seqs = jnp.full((rows, max_len), pad_id, jnp.int32)
  return seqs.at[:, 0].set(bos_id)


def greedy(
  step_fn: StepFn,
  state: Any,
  batch: int,
  max_len: int,
  *,
  bos_id: int,
  eos_id: int,
  pad_id: int = 0,
) -> jax.Array:
  """The most likely next token at each step: int32 `[batch, max_len]` (bos first)."""

  def body(i, carry):
    seqs, done, state = carry
    logits, state = step_fn(seqs, i, state)
    logits = logits.at[:, pad_id].set(-jnp.inf)
    token = jnp.where(done, pad_id, jnp.argmax(logits, axis=-1).astype(jnp.int32))
    seqs = jax.lax.dynamic_update_slice(seqs, token[:, None], (0, i + 1))
    return seqs, done | (token == eos_id), state

  init = (_start(batch, max_len, bos_id, pad_id), jnp.zeros((batch,), jnp.bool_), state)
  seqs, _, _ = jax.lax.fori_loop(0, max_len - 1, body, init)
  return seqs


def _rows_of(tree: Any, parent: jax.Array, batch: int, beams: int) -> Any:
  """Reorders every `[batch * beams, ...]` leaf by `parent` `[batch, beams]`."""

  def take(x):
    if jnp.ndim(x) == 0:
      return x
    x = x.reshape((batch, beams) + x.shape[1:])
    index = parent.reshape(parent.shape + (1,) * (x.ndim - 2))
    return jnp.take_along_axis(x, index, axis=1).reshape((batch * beams,) + x.shape[2:])

  return jax.tree.map(take, tree)


def beam_search(
  step_fn: StepFn,
  state: Any,
  batch: int,
  max_len: int,
  *,
  beam_size: int,
  bos_id: int,
  eos_id: int,
  pad_id: int = 0,
  length_penalty: float = 0.0,
) -> tuple[jax.Array, jax.Array]:
  """The `beam_size` best partial sequences kept at each step.

  `state` has `batch` rows (repeated here for the beams). A finished beam
  stays in the beam with its score, continued by padding at no cost. At the
  end the beam with the best `log p / length ** length_penalty` (length
  counting the tokens after bos, eos included) is returned.

  Returns (int32 `[batch, max_len]`, float32 log-probabilities `[batch]`).
  """
  k = beam_size
  n = batch * k
  state = jax.tree.map(lambda x: x if jnp.ndim(x) == 0 else jnp.repeat(x, k, axis=0), state)
  # One live beam at first, so the k beams do not start as k copies.
  scores = jnp.tile(jnp.where(jnp.arange(k) == 0, 0.0, -jnp.inf)[None], (batch, 1))

  def body(i, carry):
    seqs, scores, done, state = carry
    logits, state = step_fn(seqs, i, state)
    logits = logits.astype(jnp.float32).at[:, pad_id].set(-jnp.inf)
    logp = jax.nn.log_softmax(logits).reshape(batch, k, -1)
    vocab = logp.shape[-1]
    pad_only = jnp.where(jnp.arange(vocab) == pad_id, 0.0, -jnp.inf)
    logp = jnp.where(done.reshape(batch, k, 1), pad_only, logp)
    total = (scores[..., None] + logp).reshape(batch, k * vocab)
    scores, flat = jax.lax.top_k(total, k)
    parent, token = flat // vocab, (flat % vocab).astype(jnp.int32)
    seqs, done, state = _rows_of((seqs, done, state), parent, batch, k)
    seqs = jax.lax.dynamic_update_slice(seqs, token.reshape(n, 1), (0, i + 1))
    return seqs, scores, done | (token.reshape(n) == eos_id), state

  init = (_start(n, max_len, bos_id, pad_id), scores, jnp.zeros((n,), jnp.bool_), state)
  seqs, scores, _, _ = jax.lax.fori_loop(0, max_len - 1, body, init)
  seqs = seqs.reshape(batch, k, max_len)
  length = jnp.maximum(jnp.sum(seqs[:, :, 1:] != pad_id, axis=-1), 1).astype(jnp.float32)
  best = jnp.argmax(scores / length**length_penalty, axis=1)
  pick = lambda x: jnp.take_along_axis(x, best.reshape((batch, 1) + (1,) * (x.ndim - 2)), 1)[:, 0]
  return pick(seqs), pick(scores)
