"""'captioning': teacher-forced next-token cross-entropy of a text decoder.

  c.objectives = dict(caption=dict(type="captioning", label_smoothing=0.1))

The model outputs 'caption_logits' `[B, L - 1, vocab]` for the batch's
`text[:, :-1]` (`cmjax/models/captioner.py`); the targets are `text[:, 1:]`,
counted where `text_mask[:, 1:]` is True and the row has a caption and its
source ('caption_present'). Metrics: 'token_accuracy', 'perplexity', 'tokens'.
"""

from __future__ import annotations

import jax.numpy as jnp

from cmjax import sequence_losses
from cmjax.objectives import base


@base.register("captioning")
class CaptioningObjective(base.Objective):
  needs_outputs = ("caption_logits",)
  needs_batch = ("text", "text_mask")

  def __init__(self, entry, ctx, where=""):
    super().__init__(entry, ctx, where)
    base.check_keys(self.where, entry, ("label_smoothing",))
    self.label_smoothing = float(entry.get("label_smoothing", 0.0))
    if not 0.0 <= self.label_smoothing < 1.0:
      raise ValueError(f"{self.where}.label_smoothing={self.label_smoothing}; expected [0, 1).")

  def __call__(self, outputs, batch, step):
    del step
    weights = batch["text_mask"][:, 1:].astype(jnp.float32)
    if "caption_present" in outputs:
      weights = weights * outputs["caption_present"][:, None].astype(jnp.float32)
    return sequence_losses.token_cross_entropy(
      outputs["caption_logits"], batch["text"][:, 1:], weights, self.label_smoothing
    )
