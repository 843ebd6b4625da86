"""Held-out supervised heads: classes, multi-label and regression targets, and
robustness to a missing or corrupted modality.

For every task head of the model, by the kind of its target in the dataset's
spec, on the held-out split:
* class labels: accuracy and macro precision / recall / F1, and the confusion
  matrices (`artifacts()`, written by the trainer to `<workdir>/<eval name>.json`);
* multi-label targets: mAP (mean over classes of average precision) and macro
  F1 of the classes predicted at `threshold` (probability, default 0.5);
* regression targets: MAE, Pearson r, and the accuracy and weighted F1 of the
  sign (non-negative vs negative), as sentiment benchmarks report.

Robustness, per modality, in each task's headline metric (accuracy, mAP or
MAE; `accuracy` below):
* `missing_fractions`: accuracy when the modality is absent from a random
  fraction f of the examples (the same examples at every evaluation):
  `classification/<task>/missing_<modality>_<f>/accuracy`;
* `noise_levels`: accuracy when the modality's input is corrupted at level s:
  images get Gaussian pixel noise of std s (pixels in [0, 1]), audio white
  noise of std s times the utterance's own RMS, text has a fraction s of its
  real tokens replaced by random ones:
  `classification/<task>/noise_<modality>_<s>/accuracy`.

With `group_by=KEY` (an int32 field of the rows, e.g. 'question_type' in
config.data.extras) each task's headline metric is also reported per value of
KEY: `classification/<task>/by_<KEY>/<name>/accuracy`, names from
`group_names` (a list indexed by value; the value itself otherwise).
"""

from __future__ import annotations

import jax
import numpy as np

from cmjax.data import pipeline
from cmjax.data import spec as spec_lib
from cmjax.evaluators import common, metrics


@common.register("classification")
class ClassificationEvaluator:
  def __init__(self, entry, ctx: common.EvalContext):
    model, dataset = ctx.model, ctx.dataset
    self.every_steps = common.every(entry, 0)
    self.modalities = ctx.modalities
    self.heads = dict(getattr(model, "heads", None) or dataset.spec.heads())
    if not self.heads:
      raise ValueError(
        "the classification evaluator needs a model with heads and a dataset with "
        "targets (config.data.labels, or config.model.heads = {task: outputs})."
      )
    self.kinds = {t: dataset.spec.task_kind(t) for t in self.heads}
    threshold = float(entry.get("threshold", 0.5))
    self.logit_threshold = float(np.log(threshold / (1 - threshold)))
    self.batch_size = int(entry.get("batch_size", 250))
    self.missing_fractions = [float(f) for f in entry.get("missing_fractions", ())]
    self.noise_levels = [float(s) for s in entry.get("noise_levels", ())]
    self.vocab_size = dataset.spec.vocab_size
    self.confusion = {}
    source = dataset.source(
      entry.get("split", "test"),
      seed=common.split_seed(entry),
      num_examples=int(entry.get("num_examples", 1000)),
    )
    # A fixed caption per example: the same inputs at every evaluation.
    self.arrays = pipeline.materialize(source, dataset.eval_row)
    self.n = len(next(iter(self.arrays.values())))
    self.group_by = entry.get("group_by")
    if self.group_by is not None and self.group_by not in self.arrays:
      raise ValueError(
        f"evaluator {entry.get('type')!r}: group_by={self.group_by!r} is not in the held-out "
        f"rows, which have {sorted(self.arrays)}; add it to config.data.extras"
      )
    self.group_names = tuple(entry.get("group_names") or ())
    rng = np.random.default_rng(int(entry.get("seed", 0)))
    self.missing_order = {m: rng.permutation(self.n) for m in self.modalities}
    self._apply = jax.jit(
      lambda v, b: {k: x for k, x in model.apply(v, b).items() if k.startswith("logits/")}
    )

  def predict(
    self,
    variables,
    present: dict[str, np.ndarray] | None = None,
    arrays: dict[str, np.ndarray] | None = None,
  ) -> dict[str, np.ndarray]:
    """{task: `[n, outputs]` head outputs (logits)}; `present`: {modality: bool
    `[n]`}; `arrays`: inputs to use instead of the held-out ones (e.g. corrupted)."""
    arrays = self.arrays if arrays is None else arrays
    inputs = {k for m in self.modalities for k in spec_lib.modality(m).keys}
    keys = [k for k in self.arrays if k in inputs]
    preds = {t: [] for t in self.heads}
    for start in range(0, self.n, self.batch_size):
      rows = np.arange(start, min(start + self.batch_size, self.n))
      # The last batch is padded by repeating row 0: one compiled shape only.
      idx = np.concatenate([rows, np.zeros(self.batch_size - len(rows), int)])
      batch = {k: arrays[k][idx] for k in keys}
      if present is not None:
        batch.update({f"{m}_present": present[m][idx] for m in self.modalities})
      out = self._apply(variables, batch)
      for t in self.heads:
        preds[t].append(np.asarray(out[f"logits/{t}"], np.float32)[: len(rows)])
    return {t: np.concatenate(p) for t, p in preds.items()}

  def present_with_missing(self, modality: str, fraction: float) -> dict[str, np.ndarray]:
    present = {m: np.ones(self.n, bool) for m in self.modalities}
    present[modality][self.missing_order[modality][: int(round(fraction * self.n))]] = False
    return present

  def corrupted(self, modality: str, level: float) -> dict[str, np.ndarray]:
    """The held-out inputs with `modality` corrupted at `level` (fixed noise)."""
    rng = np.random.default_rng(1234)
    out = dict(self.arrays)
    if modality in ("image", "video"):
      x = self.arrays[modality].astype(np.float32) / 255.0
      x = x + rng.normal(0.0, level, x.shape).astype(np.float32)
      out[modality] = np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)
    elif modality == "audio":
      a, mask = self.arrays["audio"], self.arrays["audio_mask"]
      rms = np.sqrt(np.sum(a * a, 1, keepdims=True) / np.maximum(mask.sum(1, keepdims=True), 1))
      noise = rng.normal(0.0, 1.0, a.shape).astype(np.float32) * level * rms
      out["audio"] = np.where(mask, a + noise, 0.0).astype(np.float32)
    elif modality == "text":
      t, mask = self.arrays["text"], self.arrays["text_mask"]
      swap = mask & (rng.random(t.shape) < level)
      # Ids 0-3 are reserved (padding, unknown, ...): draw real words.
      out["text"] = np.where(swap, rng.integers(4, self.vocab_size, t.shape), t).astype(t.dtype)
    return out

  def artifacts(self) -> dict:
    """Confusion matrices of the last run: {task: [[count of true i predicted j]]}."""
    return {"confusion_matrix": {t: cm.tolist() for t, cm in self.confusion.items()}}

  def task_metrics(
    self, t: str, logits: np.ndarray, target: np.ndarray | None = None
  ) -> dict[str, float]:
    """The metrics of head `t`'s outputs `[n, outputs]` against `target` (default:
    every held-out row's); the first is its headline."""
    target = self.arrays[t] if target is None else target
    if self.kinds[t] == "class":
      pred = logits.argmax(-1)
      out = {"accuracy": metrics.accuracy(target, pred)}
      for name, value in metrics.macro_precision_recall_f1(target, pred, self.heads[t]).items():
        out[f"macro_{name}"] = value
      return out
    if self.kinds[t] == "multilabel":
      return {
        "mAP": metrics.mean_average_precision(logits, target),
        "macro_f1": metrics.multilabel_macro_f1(logits > self.logit_threshold, target),
      }
    pred = logits[:, 0]
    sign_true, sign_pred = (target >= 0).astype(int), (pred >= 0).astype(int)
    return {
      "mae": float(np.mean(np.abs(pred - target))),
      "pearson_r": metrics.pearson_r(pred, target),
      "sign_accuracy": metrics.accuracy(sign_true, sign_pred),
      "sign_f1": metrics.weighted_f1(sign_true, sign_pred, 2),
    }

  def group_metrics(self, t: str, logits: np.ndarray):
    """Task `t`'s headline metric on the rows of each value of `group_by`:
    `classification/<t>/by_<group_by>/<value name>/<metric>` (and the rows' count)."""
    groups = np.asarray(self.arrays[self.group_by])
    for g in np.unique(groups):
      rows = groups == g
      name = self.group_names[g] if 0 <= g < len(self.group_names) else str(int(g))
      metric, value = next(iter(self.task_metrics(t, logits[rows], self.arrays[t][rows]).items()))
      prefix = f"classification/{t}/by_{self.group_by}/{name}"
      yield f"{prefix}/{metric}", value
      yield f"{prefix}/count", int(rows.sum())

  def headline(self, t: str, logits: np.ndarray) -> tuple[str, float]:
    return next(iter(self.task_metrics(t, logits).items()))

  def run(self, variables):
    preds = self.predict(variables)
    for t in self.heads:
      if self.kinds[t] == "class":
        cm = metrics.confusion_matrix(self.arrays[t], preds[t].argmax(-1), self.heads[t])
        self.confusion[t] = cm
      for name, value in self.task_metrics(t, preds[t]).items():
        yield f"classification/{t}/{name}", value
      if self.group_by is not None:
        yield from self.group_metrics(t, preds[t])
    for m in self.modalities:
      for f in self.missing_fractions:
        missing = self.predict(variables, self.present_with_missing(m, f))
        for t in self.heads:
          name, value = self.headline(t, missing[t])
          yield f"classification/{t}/missing_{m}_{f:g}/{name}", value
      for level in self.noise_levels:
        noisy = self.predict(variables, arrays=self.corrupted(m, level))
        for t in self.heads:
          name, value = self.headline(t, noisy[t])
          yield f"classification/{t}/noise_{m}_{level:g}/{name}", value
