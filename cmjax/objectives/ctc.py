"""'ctc': connectionist temporal classification of the batch's text from a
recognizer's frames.

  c.objectives = dict(ctc=dict(type="ctc"))

The model outputs 'ctc_logits' `[B, n, vocab]` and 'ctc_mask' `[B, n]`
(`cmjax/models/recognizer.py`); the labels are the batch's text without
<bos>, <eos> and padding (`text[:, 1:]` up to <eos>), id 0 (padding) being the
blank. The loss is the mean over rows with speech and text of -log p / label
count (as torch's `ctc_loss(reduction='mean')`). Metrics: 'nll_per_label',
'frames_per_label' (CTC needs at least one frame per label, and more for
repeats). Options: eos_id (default cmjax's tokenizers' <eos>).
"""

from __future__ import annotations

import jax.numpy as jnp

from cmjax import sequence_losses
from cmjax.data import tokenizers
from cmjax.objectives import base


@base.register("ctc")
class CTCObjective(base.Objective):
  needs_outputs = ("ctc_logits", "ctc_mask")
  needs_batch = ("text", "text_mask")

  def __init__(self, entry, ctx, where=""):
    super().__init__(entry, ctx, where)
    base.check_keys(self.where, entry, ("eos_id",))
    self.eos_id = int(entry.get("eos_id", tokenizers.EOS))

  def __call__(self, outputs, batch, step):
    del step
    labels = batch["text"][:, 1:]
    label_mask = batch["text_mask"][:, 1:] & (labels != self.eos_id)
    nll = sequence_losses.ctc_loss(
      outputs["ctc_logits"], outputs["ctc_mask"], jnp.where(label_mask, labels, 0), label_mask
    )
    count = jnp.sum(label_mask, axis=1).astype(jnp.float32)
    rows = (count > 0).astype(jnp.float32)
    if "ctc_present" in outputs:
      rows = rows * outputs["ctc_present"].astype(jnp.float32)
    per_label = nll / jnp.maximum(count, 1.0)
    n = jnp.maximum(jnp.sum(rows), 1.0)
    frames = jnp.sum(outputs["ctc_mask"], axis=1).astype(jnp.float32)
    metrics = dict(
      nll_per_label=jnp.sum(rows * per_label) / n,
      frames_per_label=jnp.sum(rows * frames / jnp.maximum(count, 1.0)) / n,
    )
    return jnp.sum(rows * per_label) / n, metrics
