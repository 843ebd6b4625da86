"""Supervised heads against the batch's targets: classes, multi-label, regression.

  c.objectives = dict(classification=dict(type="classification", class_weights=None))

The model outputs `logits/<task>` `[B, outputs]` per task; the target is the
batch key of the same name, and the dataset's spec says its kind: a class
label (int32 `[B]`: softmax cross-entropy), a multi-label target (multi-hot
`[B, classes]`: sigmoid cross-entropy) or a regression target (float32 `[B]`,
one output: squared or absolute error). Options:
  tasks            the tasks to train (default: every `logits/<task>` output).
  class_weights    None, or 'balanced': each class weighted n / (classes x count)
                   over the train split (class tasks; for skewed labels).
  regression_loss  'mse' (default) or 'l1'.
A scalar `aux_loss` output (e.g. the missing-modality predictor's regression
loss) is added to the total.
"""

from __future__ import annotations

from cmjax import losses
from cmjax.data import balance
from cmjax.objectives import base


@base.register("classification")
class ClassificationObjective(base.Objective):
  def __init__(self, entry, ctx, where=""):
    super().__init__(entry, ctx, where)
    base.check_keys(self.where, entry, ("tasks", "class_weights", "regression_loss"))
    spec = ctx.dataset.spec
    heads = dict(ctx.config.model.get("heads") or spec.heads())
    self.tasks = tuple(entry.get("tasks") or ())
    for t in self.tasks or heads:
      if t not in spec.heads():
        raise ValueError(
          f"{self.where}: task {t!r} has no labels in dataset "
          f"{spec.dataset!r}; it has {sorted(spec.heads())}."
        )
    self.kinds = {t: spec.task_kind(t) for t in self.tasks or heads}
    self.regression = entry.get("regression_loss", "mse")
    if self.regression not in ("mse", "l1"):
      raise ValueError(f"{self.where}.regression_loss={self.regression!r}; expected 'mse' or 'l1'.")
    self.needs_outputs = tuple(f"logits/{t}" for t in self.tasks)
    self.needs_batch = self.tasks or tuple(heads)
    weights = entry.get("class_weights")
    if weights not in (None, "balanced"):
      raise ValueError(f"{self.where}.class_weights={weights!r}; expected 'balanced' or None.")
    self.class_weights = None
    if weights == "balanced":
      source = ctx.dataset.source("train", seed=ctx.config.seed)
      self.class_weights = {
        t: balance.balanced_class_weights(balance.labels_of(source, t), classes)
        for t, classes in heads.items()
        if self.kinds[t] == "class"
      }

  def check(self, output_keys, batch_keys) -> None:
    super().check(output_keys, batch_keys)
    tasks = self.tasks or [k[len("logits/") :] for k in output_keys if k.startswith("logits/")]
    if not tasks:
      raise ValueError(
        f"{self.where} (classification) needs 'logits/<task>' model outputs; "
        f"the model outputs {sorted(output_keys)}."
      )
    base.require(self.where, "batch keys (labels)", tasks, batch_keys)

  def __call__(self, outputs, batch, step):
    del step
    if self.tasks:
      keep = {f"logits/{t}" for t in self.tasks} | {"aux_loss"}
      outputs = {k: v for k, v in outputs.items() if k in keep}
    return losses.classification_loss(
      outputs, batch, class_weights=self.class_weights, kinds=self.kinds, regression=self.regression
    )
