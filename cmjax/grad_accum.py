"""Gradients of a batch too big for memory, from micro-batches.

Every function here returns `(loss, metrics, model_state, grads)` for one
batch, given

  apply_fn(params, model_state, batch, rng) -> (outputs, model_state)
  loss_fn(outputs, batch) -> (loss, metrics)

`config.grad_accum_steps = k` splits each batch into k micro-batches; only one
micro-batch's activations are alive at a time. Two ways (`config.grad_accum`):

- 'mean' (default): the mean of the k micro-batch gradients. Equal to the
  full-batch gradient (to float rounding) for losses that are a mean over
  examples of a per-example term, e.g. classification without class weights.
  NOT equal for contrastive losses: each micro-batch only sees its own
  negatives (B/k instead of B), which is a different, easier objective; with
  class weights the weighted means differ slightly; BatchNorm statistics are
  those of each micro-batch, and running averages move k times.
- 'cached_embeddings': exact for contrastive losses (the gradient-caching
  method of Gao et al. 2021): a first pass embeds every micro-batch without
  keeping activations; the loss and its gradient with respect to the
  embeddings are computed on the whole batch (all B negatives); a second pass
  re-embeds each micro-batch and back-propagates its slice of that gradient.
  Costs one extra forward pass. The same dropout keys are used in both passes;
  BatchNorm statistics are still per micro-batch.

Micro-batch i holds rows i, i + k, i + 2k, ...: with the batch split over
devices in contiguous blocks, every device keeps working on every micro-batch.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

ApplyFn = Callable[..., tuple[Any, Any]]
LossFn = Callable[[Any, Any], tuple[jax.Array, dict]]
METHODS = ("mean", "cached_embeddings")


def split_microbatches(batch: dict, k: int) -> dict:
  """`{key: [B, ...]}` -> `{key: [k, B // k, ...]}`, micro-batch i = rows i::k."""

  def split(x):
    if x.shape[0] % k:
      raise ValueError(f"config.grad_accum_steps={k} does not divide the batch of {x.shape[0]}.")
    return jnp.swapaxes(x.reshape(x.shape[0] // k, k, *x.shape[1:]), 0, 1)

  return jax.tree_util.tree_map(split, batch)


def full_batch_grads(apply_fn: ApplyFn, loss_fn: LossFn, params, model_state, batch, rng):
  """One forward and backward pass over the whole batch."""

  def objective(p):
    outputs, new_state = apply_fn(p, model_state, batch, rng)
    loss, metrics = loss_fn(outputs, batch)
    return loss, (metrics, new_state)

  (loss, (metrics, new_state)), grads = jax.value_and_grad(objective, has_aux=True)(params)
  return loss, metrics, new_state, grads


def mean_microbatch_grads(
  apply_fn: ApplyFn, loss_fn: LossFn, params, model_state, batch, rng, k: int
):
  """The mean over k micro-batches of loss, metrics and gradients (see module doc)."""
  micro = split_microbatches(batch, k)

  def step(carry, inputs):
    grads_sum, state = carry
    index, mb = inputs
    loss, metrics, state, grads = full_batch_grads(
      apply_fn, loss_fn, params, state, mb, jax.random.fold_in(rng, index)
    )
    grads_sum = jax.tree_util.tree_map(jnp.add, grads_sum, grads)
    return (grads_sum, state), (loss, metrics)

  zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
  (grads_sum, new_state), (losses, metrics) = jax.lax.scan(
    step, (zeros, model_state), (jnp.arange(k), micro)
  )
  mean = lambda x: jnp.mean(x, axis=0)
  grads = jax.tree_util.tree_map(lambda g: g / k, grads_sum)
  return mean(losses), jax.tree_util.tree_map(mean, metrics), new_state, grads


def _merge_outputs(stacked, k: int):
  """`[k, b, ...]` micro-batch outputs -> `[k * b, ...]`. A scalar output (a
  temperature, or a loss term that is a mean over the micro-batch) becomes its
  mean over the k micro-batches: the same value for a parameter, the
  full-batch mean for a mean over equal-sized micro-batches."""
  return jax.tree_util.tree_map(
    lambda x: jnp.mean(x, axis=0) if x.ndim == 1 else x.reshape(-1, *x.shape[2:]), stacked
  )


def _split_cotangent(cotangent, k: int):
  """The transpose of `_merge_outputs`: per-row slices to their micro-batch, a
  scalar's gradient shared equally by the k micro-batches."""
  return jax.tree_util.tree_map(
    lambda g: jnp.full((k,), g / k, g.dtype) if g.ndim == 0 else g.reshape(k, -1, *g.shape[1:]),
    cotangent,
  )


def cached_embedding_grads(
  apply_fn: ApplyFn, loss_fn: LossFn, params, model_state, batch, rng, k: int
):
  """Exact full-batch loss and gradients in k micro-batches (see module doc)."""
  micro = split_microbatches(batch, k)
  keys = jax.vmap(lambda i: jax.random.fold_in(rng, i))(jnp.arange(k))

  def embed(state, inputs):
    key, mb = inputs
    outputs, state = apply_fn(params, state, mb, key)
    return state, jax.lax.stop_gradient(outputs)

  new_state, stacked = jax.lax.scan(embed, model_state, (keys, micro))
  # The batch in micro-batch order, matching the merged outputs row for row.
  merged_batch = jax.tree_util.tree_map(lambda x: x.reshape(-1, *x.shape[2:]), micro)
  (loss, metrics), cotangent = jax.value_and_grad(lambda o: loss_fn(o, merged_batch), has_aux=True)(
    _merge_outputs(stacked, k)
  )
  cotangents = _split_cotangent(cotangent, k)

  def backprop(grads_sum, inputs):
    key, mb, ct = inputs
    _, vjp = jax.vjp(lambda p: apply_fn(p, model_state, mb, key)[0], params)
    (grads,) = vjp(ct)
    return jax.tree_util.tree_map(jnp.add, grads_sum, grads), None

  zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
  grads, _ = jax.lax.scan(backprop, zeros, (keys, micro, cotangents))
  return loss, metrics, new_state, grads
