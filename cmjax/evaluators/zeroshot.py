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

`classes` and `templates` may also be a path to a text file with one per line;
without `classes`, a dataset that names its classes (`files`: the label
column's values) gives them.

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


def _lines(value, what: str) -> list[str]:
  """A list as given, or the non-empty lines of the file `value` names."""
  if isinstance(value, str):
    try:
      with open(value, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]
    except OSError as e:
      raise ValueError(f"zero-shot {what}: cannot read {value!r}: {e.strerror or e}") from None
  return [str(v) for v in value]


def _task_classes(name: str, task, dataset) -> list[str]:
  if task.get("classes"):
    return _lines(task["classes"], f"task {name!r} classes")
  if hasattr(dataset, "class_names"):
    return dataset.class_names(task["label"])
  raise ValueError(f"zeroshot task {name!r} needs classes: a list of names or a file of them")


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
    classes, templates = {}, {}
    for name, task in tasks.items():
      dataset.num_classes(task["label"])  # raises naming the dataset's labels
      classes[name] = _task_classes(name, task, dataset)
      templates[name] = _lines(task.get("templates") or ["{}"], f"task {name!r} templates")
      if len(classes[name]) != dataset.num_classes(task["label"]):
        raise ValueError(
          f"zeroshot task {name!r}: {len(classes[name])} class names for "
          f"label {task['label']!r}, which has {dataset.num_classes(task['label'])}."
        )
    source = dataset.source(
      entry.get("split", "test"),
      seed=common.split_seed(entry),
      num_examples=int(entry.get("num_examples", 1000)),
      **dict(entry.get("source_options") or {}),
    )

    def prep(record):
      row = dataset.eval_row(record)  # decoded and resized as for training
      return {"image": row["image"], **{n: np.int32(row[t["label"]]) for n, t in tasks.items()}}

    arrays = pipeline.materialize(source, prep)
    self.images = arrays["image"]
    self.labels = {name: arrays[name] for name in tasks}
    text_len = dataset.spec.text_length()
    self.prompts = {}
    for name in tasks:
      groups = class_prompts(classes[name], templates[name])
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
