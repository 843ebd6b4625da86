"""Training objectives as pure functions of arrays.

Embeddings are `[batch, dim]`, assumed L2-normalised by the model; row i of x
and row i of y form the positive pair.
"""

import itertools
import math
from typing import Callable

import chex
import jax
import jax.numpy as jnp
import optax

MAX_LOGIT_SCALE = math.log(100.0)  # CLIP clips the inverse temperature at 100


def _logits(x: jax.Array, y: jax.Array, scale: jax.Array) -> jax.Array:
  chex.assert_rank([x, y], 2)
  chex.assert_equal_shape([x, y])
  x, y = x.astype(jnp.float32), y.astype(jnp.float32)
  return scale * (x @ y.T)  # [B, B]: logits[i, j] compares x_i with y_j


def clip_loss(x: jax.Array, y: jax.Array, logit_scale: jax.Array) -> jax.Array:
  """Symmetric softmax InfoNCE (CLIP).

  Args:
    x, y: `[B, D]` embeddings.
    logit_scale: scalar log inverse temperature, clipped at log(100).

  Returns:
    scalar: mean of the x->y and y->x cross entropies.
  """
  scale = jnp.exp(jnp.minimum(jnp.asarray(logit_scale, jnp.float32), MAX_LOGIT_SCALE))
  logits = _logits(x, y, scale)
  labels = jnp.arange(logits.shape[0])
  ce = optax.softmax_cross_entropy_with_integer_labels
  return 0.5 * (jnp.mean(ce(logits, labels)) + jnp.mean(ce(logits.T, labels)))


def siglip_loss(x: jax.Array, y: jax.Array, logit_scale: jax.Array,
                logit_bias: jax.Array) -> jax.Array:
  """Pairwise sigmoid loss (SigLIP, Zhai et al. 2023).

  -1/B * sum_ij log_sigmoid(z_ij * (t x_i.y_j + b)), z = +1 on the diagonal and
  -1 elsewhere, t = exp(logit_scale).

  Args:
    x, y: `[B, D]` embeddings.
    logit_scale: scalar log t.
    logit_bias: scalar b.

  Returns:
    scalar.
  """
  logits = _logits(x, y, jnp.exp(jnp.asarray(logit_scale, jnp.float32)))
  logits = logits + jnp.asarray(logit_bias, jnp.float32)
  n = logits.shape[0]
  z = 2.0 * jnp.eye(n, dtype=jnp.float32) - 1.0
  return -jnp.sum(jax.nn.log_sigmoid(z * logits)) / n


def retrieval_accuracy(x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
  """In-batch top-1 accuracy of x->y and y->x retrieval for `[B, D]` inputs."""
  sim = _logits(x, y, 1.0)
  target = jnp.arange(sim.shape[0])
  return (jnp.mean(jnp.argmax(sim, axis=1) == target),
          jnp.mean(jnp.argmax(sim, axis=0) == target))


def multimodal_contrastive_loss(
    outputs: dict, *, kind: str = 'clip',
    modalities: tuple[str, ...] = ('image', 'text', 'audio'),
) -> tuple[jax.Array, dict]:
  """Sums a pairwise contrastive loss over every pair of present modalities.

  Args:
    outputs: model outputs: `[B, D]` embeddings under modality names, scalars
      'logit_scale' and (for 'siglip') 'logit_bias'.
    kind: 'clip' (softmax) or 'siglip' (sigmoid).
    modalities: candidate modalities; pairs with a modality absent from
      `outputs` are skipped.

  Returns:
    (scalar loss, metrics) with metrics 'loss', 'loss/<a>_<b>',
    'accuracy/<a>_to_<b>', 'accuracy/<b>_to_<a>', 'accuracy/<a>_<b>' (mean of
    the two), 'temperature' and 'logit_bias'.
  """
  if kind not in ('clip', 'siglip'):
    raise ValueError(f"kind must be 'clip' or 'siglip', got {kind!r}")
  if 'logit_scale' not in outputs:
    raise KeyError(f"outputs lack 'logit_scale'; got keys {sorted(outputs)}")
  present = [m for m in modalities if m in outputs]
  pairs = list(itertools.combinations(present, 2))
  if not pairs:
    raise ValueError(f'need at least two of {list(modalities)} in outputs to form '
                     f'a pair, got {present}')
  scale = outputs['logit_scale']
  bias = outputs.get('logit_bias', 0.0)
  metrics = {}
  total = 0.0
  for a, b in pairs:
    if kind == 'clip':
      pair_loss = clip_loss(outputs[a], outputs[b], scale)
    else:
      pair_loss = siglip_loss(outputs[a], outputs[b], scale, bias)
    total = total + pair_loss
    acc_ab, acc_ba = retrieval_accuracy(outputs[a], outputs[b])
    metrics[f'loss/{a}_{b}'] = pair_loss
    metrics[f'accuracy/{a}_to_{b}'] = acc_ab
    metrics[f'accuracy/{b}_to_{a}'] = acc_ba
    metrics[f'accuracy/{a}_{b}'] = 0.5 * (acc_ab + acc_ba)
  used_scale = jnp.minimum(scale, MAX_LOGIT_SCALE) if kind == 'clip' else scale
  metrics['loss'] = total
  metrics['temperature'] = jnp.exp(-jnp.asarray(used_scale, jnp.float32))
  metrics['logit_bias'] = jnp.asarray(bias, jnp.float32)
  return total, metrics


_LOSSES: dict[str, Callable] = {
    'clip': clip_loss,
    'siglip': siglip_loss,
    'multimodal_contrastive': multimodal_contrastive_loss,
}


def get_loss(name: str) -> Callable:
  """Returns the loss function registered under `name`."""
  if name not in _LOSSES:
    raise ValueError(f'unknown loss {name!r}; known losses: {sorted(_LOSSES)}')
  return _LOSSES[name]
