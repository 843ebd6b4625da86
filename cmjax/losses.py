"""Training objectives as pure functions of arrays.

Embeddings are `[batch, dim]`, assumed L2-normalised by the model; row i of x
and row i of y form the positive pair.
"""

import functools
import itertools
import math

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


def _valid_mask(valid: jax.Array | None, n: int) -> jax.Array:
  """bool `[B]` of rows taking part in the loss (all rows if None)."""
  if valid is None:
    return jnp.ones((n,), jnp.bool_)
  chex.assert_shape(valid, (n,))
  return valid.astype(jnp.bool_)


def clip_loss(
  x: jax.Array, y: jax.Array, logit_scale: jax.Array, valid: jax.Array | None = None
) -> jax.Array:
  """Symmetric softmax InfoNCE (CLIP).

  Args:
    x, y: `[B, D]` embeddings.
    logit_scale: scalar log inverse temperature, clipped at log(100).
    valid: optional bool `[B]`: pairs that exist (e.g. both modalities
      present). Other rows are neither anchors nor negatives.

  Returns:
    scalar: mean of the x->y and y->x cross entropies over valid rows.
  """
  scale = jnp.exp(jnp.minimum(jnp.asarray(logit_scale, jnp.float32), MAX_LOGIT_SCALE))
  logits = _logits(x, y, scale)
  n = logits.shape[0]
  labels = jnp.arange(n)
  ce = optax.softmax_cross_entropy_with_integer_labels
  if valid is None:
    return 0.5 * (jnp.mean(ce(logits, labels)) + jnp.mean(ce(logits.T, labels)))
  ok = _valid_mask(valid, n)
  # A finite large negative (not -inf) keeps all-invalid rows NaN-free.
  both = ok[:, None] & ok[None, :]
  logits = jnp.where(both, logits, -1e9)
  w = ok.astype(jnp.float32)
  count = jnp.maximum(jnp.sum(w), 1.0)
  return 0.5 * (jnp.sum(w * ce(logits, labels)) + jnp.sum(w * ce(logits.T, labels))) / count


def siglip_loss(
  x: jax.Array,
  y: jax.Array,
  logit_scale: jax.Array,
  logit_bias: jax.Array,
  valid: jax.Array | None = None,
) -> jax.Array:
  """Pairwise sigmoid loss (SigLIP, Zhai et al. 2023).

  -1/B * sum_ij log_sigmoid(z_ij * (t x_i.y_j + b)), z = +1 on the diagonal and
  -1 elsewhere, t = exp(logit_scale).

  Args:
    x, y: `[B, D]` embeddings.
    logit_scale: scalar log t.
    logit_bias: scalar b.
    valid: optional bool `[B]`: only pairs (i, j) with both rows valid count,
      and B becomes the number of valid rows.

  Returns:
    scalar.
  """
  logits = _logits(x, y, jnp.exp(jnp.asarray(logit_scale, jnp.float32)))
  logits = logits + jnp.asarray(logit_bias, jnp.float32)
  n = logits.shape[0]
  z = 2.0 * jnp.eye(n, dtype=jnp.float32) - 1.0
  terms = jax.nn.log_sigmoid(z * logits)
  if valid is None:
    return -jnp.sum(terms) / n
  ok = _valid_mask(valid, n).astype(jnp.float32)
  return -jnp.sum(terms * ok[:, None] * ok[None, :]) / jnp.maximum(jnp.sum(ok), 1.0)


def retrieval_accuracy(
  x: jax.Array, y: jax.Array, valid: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
  """In-batch top-1 accuracy of x->y and y->x retrieval for `[B, D]` inputs.

  With `valid` (bool `[B]`), invalid rows are neither queries nor candidates.
  """
  sim = _logits(x, y, 1.0)
  n = sim.shape[0]
  ok = _valid_mask(valid, n)
  sim = jnp.where(ok[:, None] & ok[None, :], sim, -jnp.inf)
  target = jnp.arange(n)
  w = ok.astype(jnp.float32)
  count = jnp.maximum(jnp.sum(w), 1.0)
  return (
    jnp.sum(w * (jnp.argmax(sim, axis=1) == target)) / count,
    jnp.sum(w * (jnp.argmax(sim, axis=0) == target)) / count,
  )


def multimodal_contrastive_loss(
  outputs: dict,
  *,
  kind: str = "clip",
  modalities: tuple[str, ...] = ("image", "text", "audio", "video"),
  axis_name=None,
) -> tuple[jax.Array, dict]:
  """Sums a pairwise contrastive loss over every pair of present modalities.

  Args:
    outputs: model outputs: `[B, D]` embeddings under modality names, scalars
      'logit_scale' and (for 'siglip') 'logit_bias'.
    kind: 'clip' (softmax) or 'siglip' (sigmoid).
    modalities: candidate modalities; pairs with a modality absent from
      `outputs` are skipped. Optional bool `[B]` entries '<modality>_present'
      restrict each pair to the rows where both modalities are present.
    axis_name: None, or (inside `jax.shard_map`, `outputs` being this device's
      rows) the mesh axes the batch is split over: the losses and accuracies
      of the global batch then come from `cmjax.sharded_losses`, never
      forming the `[B, B]` matrix.

  Returns:
    (scalar loss, metrics) with metrics 'loss', 'loss/<a>_<b>',
    'accuracy/<a>_to_<b>', 'accuracy/<b>_to_<a>', 'accuracy/<a>_<b>' (mean of
    the two), 'temperature' and 'logit_bias'.
  """
  if kind not in ("clip", "siglip"):
    raise ValueError(f"kind must be 'clip' or 'siglip', got {kind!r}")
  if "logit_scale" not in outputs:
    raise KeyError(f"outputs lack 'logit_scale'; got keys {sorted(outputs)}")
  present = [m for m in modalities if m in outputs]
  pairs = list(itertools.combinations(present, 2))
  if not pairs:
    raise ValueError(
      f"need at least two of {list(modalities)} in outputs to form a pair, got {present}"
    )
  scale = outputs["logit_scale"]
  bias = outputs.get("logit_bias", 0.0)
  clip, siglip, accuracy = clip_loss, siglip_loss, retrieval_accuracy
  if axis_name is not None:
    from cmjax import sharded_losses  # pylint: disable=g-import-not-at-top

    clip, siglip, accuracy = (
      functools.partial(f, axis_name=axis_name)
      for f in (
        sharded_losses.clip_loss_sharded,
        sharded_losses.siglip_loss_sharded,
        sharded_losses.retrieval_accuracy_sharded,
      )
    )
  metrics = {}
  total = 0.0
  for a, b in pairs:
    flags = [outputs[f"{m}_present"] for m in (a, b) if f"{m}_present" in outputs]
    valid = None if not flags else jnp.all(jnp.stack(flags).astype(jnp.bool_), axis=0)
    if kind == "clip":
      pair_loss = clip(outputs[a], outputs[b], scale, valid)
    else:
      pair_loss = siglip(outputs[a], outputs[b], scale, bias, valid)
    total = total + pair_loss
    acc_ab, acc_ba = accuracy(outputs[a], outputs[b], valid)
    metrics[f"loss/{a}_{b}"] = pair_loss
    metrics[f"accuracy/{a}_to_{b}"] = acc_ab
    metrics[f"accuracy/{b}_to_{a}"] = acc_ba
    metrics[f"accuracy/{a}_{b}"] = 0.5 * (acc_ab + acc_ba)
  used_scale = jnp.minimum(scale, MAX_LOGIT_SCALE) if kind == "clip" else scale
  metrics["loss"] = total
  metrics["temperature"] = jnp.exp(-jnp.asarray(used_scale, jnp.float32))
  metrics["logit_bias"] = jnp.asarray(bias, jnp.float32)
  return total, metrics


def softmax_cross_entropy(
  logits: jax.Array, labels: jax.Array, class_weights: jax.Array | None = None
) -> jax.Array:
  """Mean cross-entropy of integer `labels` `[B]` under `logits` `[B, C]`.

  With `class_weights` `[C]`, example i counts with weight w[labels_i] and the
  mean is the weighted mean (sum of w * ce / sum of w), as in
  `torch.nn.functional.cross_entropy(weight=...)`.
  """
  chex.assert_rank(logits, 2)
  chex.assert_shape(labels, logits.shape[:1])
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  ce = -jnp.take_along_axis(logp, labels[:, None].astype(jnp.int32), axis=-1)[:, 0]
  if class_weights is None:
    return jnp.mean(ce)
  w = jnp.asarray(class_weights, jnp.float32)[labels]
  return jnp.sum(w * ce) / jnp.maximum(jnp.sum(w), 1e-12)


def sigmoid_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """Mean over examples and classes of the binary cross-entropy of `logits` `[B, C]`
  against multi-hot `targets` `[B, C]` (as torch's BCEWithLogitsLoss)."""
  logits = logits.astype(jnp.float32)
  targets = targets.astype(jnp.float32)
  # log(1 + exp(-|x|)) + max(x, 0) - x * t: stable for large |x|.
  per = jnp.maximum(logits, 0) - logits * targets + jnp.log1p(jnp.exp(-jnp.abs(logits)))
  return jnp.mean(per)


def regression_loss(pred: jax.Array, target: jax.Array, kind: str = "mse") -> jax.Array:
  """Mean squared ('mse') or absolute ('l1') error of `pred` `[B]` against `target` `[B]`."""
  diff = pred.astype(jnp.float32) - target.astype(jnp.float32)
  if kind == "mse":
    return jnp.mean(diff**2)
  if kind == "l1":
    return jnp.mean(jnp.abs(diff))
  raise ValueError(f"regression loss {kind!r}; expected 'mse' or 'l1'")


def _task_loss(logits, target, kind: str, class_weights, regression: str):
  """(loss, {metric: value}) of one head; see `classification_loss`."""
  if kind == "class":
    loss = softmax_cross_entropy(logits, target, class_weights)
    return loss, {"accuracy": jnp.mean((jnp.argmax(logits, -1) == target).astype(jnp.float32))}
  if kind == "multilabel":
    loss = sigmoid_cross_entropy(logits, target)
    hits = (logits > 0) == (target > 0.5)
    return loss, {"label_accuracy": jnp.mean(hits.astype(jnp.float32))}
  if kind == "regression":
    pred = logits[..., 0]
    loss = regression_loss(pred, target, regression)
    return loss, {"mae": jnp.mean(jnp.abs(pred - target.astype(jnp.float32)))}
  raise ValueError(f"task kind {kind!r}; expected 'class', 'multilabel' or 'regression'")


def classification_loss(
  outputs: dict,
  batch: dict,
  *,
  class_weights: dict | None = None,
  kinds: dict | None = None,
  regression: str = "mse",
) -> tuple[jax.Array, dict]:
  """Sum over tasks of each head's loss against `batch[<task>]`.

  Args:
    outputs: model outputs with 'logits/<task>' `[B, C_task]` entries.
    batch: each task's target under its name: int `[B]` class labels,
      multi-hot float `[B, C]` for a multi-label task, float `[B]` for a
      regression (whose head has one output).
    class_weights: optional {task: `[C_task]` weights} (class tasks).
    kinds: {task: 'class' | 'multilabel' | 'regression'}; default 'class'.
    regression: 'mse' or 'l1', the loss of regression tasks.

  An 'aux_loss' scalar in `outputs` is added to the total.

  Returns:
    (scalar loss, metrics 'loss/<task>' and 'accuracy/<task>' (class),
    'label_accuracy/<task>' (multi-label), 'mae/<task>' (regression), and
    'loss/aux').
  """
  tasks = [k[len("logits/") :] for k in outputs if k.startswith("logits/")]
  if not tasks:
    raise KeyError(f"outputs have no 'logits/<task>' entries; got {sorted(outputs)}")
  total, metrics = 0.0, {}
  for t in tasks:
    if t not in batch:
      raise KeyError(f"batch has no labels {t!r} for the head of that name; it has {sorted(batch)}")
    loss, task_metrics = _task_loss(
      outputs[f"logits/{t}"],
      batch[t],
      (kinds or {}).get(t, "class"),
      (class_weights or {}).get(t),
      regression,
    )
    total = total + loss
    metrics[f"loss/{t}"] = loss
    metrics.update({f"{name}/{t}": value for name, value in task_metrics.items()})
  if "aux_loss" in outputs:  # e.g. the missing-modality predictor's regression loss
    total = total + outputs["aux_loss"]
    metrics["loss/aux"] = outputs["aux_loss"]
  return total, metrics
