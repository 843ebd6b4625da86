"""Zero-shot classification of held-out images by text prompts.

Each class is represented by the mean embedding of its prompts (prompt
ensembling, as in CLIP): every template of the task filled with the class's
name. An image is assigned the class whose prompt embedding is most similar.
Class names, templates and the label each task is scored against come from the
config entry:

  zeroshot=dict(type="zeroshot", split="test", num_examples=1000,
                tasks=dict(color=dict(label="color_label", classes=["red", ...],
                                      templates=["a {} circle", "a {} square", ...])),
                source_options=dict(max_objects=1))   # options of the held-out split

Metrics: `zeroshot/<task>_accuracy` and `zeroshot/<task>_macro_f1`.
"""

from __future__ import annotations

import numpy as np

from cmjax.data import pipeline
from cmjax.evaluators import common, metrics


def class_prompts(classes, templates) -> list[list[str]]:
  """`[classes][templates]` prompts: each template (with one `{}`) filled with each class name."""
  for t in templates:
    if t.count("{}") != 1:
      raise ValueError(f"zero-shot template {t!r} must hold exactly one '{{}}' for the class.")
  return [[t.format(c) for t in templates] for c in classes]


@common.register("zeroshot")
class ZeroShotEvaluator:
  def __init__(self, entry, ctx: common.EvalContext):
    dataset = ctx.dataset
    self.every_steps = common.every(entry, 0)
    tasks = dict(entry.get("tasks") or {})
    if not tasks:
      raise ValueError(
        "the zeroshot evaluator needs tasks: config.evals.<name>.tasks = "
        "{task: dict(label=KEY, classes=[names], templates=['a photo of a {}'])}"
      )
    for name, task in tasks.items():
      dataset.num_classes(task["label"])  # raises naming the dataset's labels
      if len(task["classes"]) != dataset.num_classes(task["label"]):
        raise ValueError(
          f"zeroshot task {name!r}: {len(task['classes'])} class names for "
          f"label {task['label']!r}, which has {dataset.num_classes(task['label'])}."
        )
    source = dataset.source(
      entry.get("split", "test"),
      seed=common.split_seed(entry),
      num_examples=int(entry.get("num_examples", 1000)),
      **dict(entry.get("source_options") or {}),
    )
    arrays = pipeline.materialize(
      source,
      lambda r: {
        "image": r["image"],
        **{name: np.int32(r[task["label"]]) for name, task in tasks.items()},
      },
    )
    self.images = arrays["image"]
    self.labels = {name: arrays[name] for name in tasks}
    text_len = dataset.spec.text_length()
    self.prompts = {}
    for name, task in tasks.items():
      groups = class_prompts(task["classes"], task["templates"])
      flat = [p for g in groups for p in g]
      ids, mask = common.tokenize_all(dataset.tokenizer, flat, text_len)
      self.prompts[name] = (ids, mask, len(groups), len(groups[0]))
    bs = int(entry.get("batch_size", 250))
    self.image_encoder = common.Encoder(ctx.model, "encode_image", bs)
    self.text_encoder = common.Encoder(ctx.model, "encode_text", bs)

  def run(self, variables):
    img = self.image_encoder(variables, self.images)
    for name, (ids, mask, num_classes, per_class) in self.prompts.items():
      txt = self.text_encoder(variables, ids, mask).reshape(num_classes, per_class, -1)
      classes = txt.mean(axis=1)
      classes /= np.linalg.norm(classes, axis=-1, keepdims=True) + 1e-8
      pred = np.argmax(img @ classes.T, axis=1)
      yield f"zeroshot/{name}_accuracy", metrics.accuracy(self.labels[name], pred)
      yield f"zeroshot/{name}_macro_f1", metrics.macro_f1(self.labels[name], pred, num_classes)
