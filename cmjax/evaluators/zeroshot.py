"""Zero-shot classification of held-out single-object images by text prompts.

Each class is represented by the mean embedding of a set of prompts built from
the dataset's canonical words (prompt ensembling, as in CLIP): the shape class
"circle" by "a red circle", "a blue circle", ..., the colour class "red" by
"a red circle", "a red square", .... An image is assigned the class whose
prompt embedding is most similar.
"""

from __future__ import annotations

import numpy as np

from cmjax.data import pipeline
from cmjax.data import shapes
from cmjax.evaluators import common
from cmjax.evaluators import metrics


def class_prompts(attribute: str) -> list[list[str]]:
  """Prompts for every class of `attribute` ('shape' or 'color')."""
  if attribute == "shape":
    return [[f"a {c} {s}" for c in shapes.COLORS] for s in shapes.SHAPES]
  if attribute == "color":
    return [[f"a {c} {s}" for s in shapes.SHAPES] for c in shapes.COLORS]
  raise ValueError(f"zero-shot attribute must be 'shape' or 'color', got {attribute!r}.")


@common.register("zeroshot")
class ZeroShotEvaluator:

  def __init__(self, entry, *, model, config):
    data = config.data
    self.every_steps = common.every(entry, 0)
    self.attributes = tuple(entry.get("attributes", ("shape", "color")))
    source = pipeline.make_source(
        data, entry.get("split", "test"), seed=common.split_seed(entry),
        num_examples=int(entry.get("num_examples", 1000)),
        min_objects=1, max_objects=1, speech=False)
    arrays = pipeline.materialize(
        source, lambda r: {"image": r["image"],
                           "shape": np.int32(r["shape_label"]),
                           "color": np.int32(r["color_label"])})
    self.images = arrays["image"]
    self.labels = {a: arrays[a] for a in self.attributes}
    tokenizer = pipeline.make_tokenizer(data)
    self.prompts = {}
    for a in self.attributes:
      groups = class_prompts(a)
      flat = [p for g in groups for p in g]
      ids, mask = common.tokenize_all(tokenizer, flat, data.max_text_len)
      self.prompts[a] = (ids, mask, len(groups), len(groups[0]))
    bs = int(entry.get("batch_size", 250))
    self.image_encoder = common.Encoder(model, "encode_image", bs)
    self.text_encoder = common.Encoder(model, "encode_text", bs)

  def run(self, variables):
    img = self.image_encoder(variables, self.images)
    for a in self.attributes:
      ids, mask, num_classes, per_class = self.prompts[a]
      txt = self.text_encoder(variables, ids, mask).reshape(num_classes, per_class, -1)
      classes = txt.mean(axis=1)
      classes /= np.linalg.norm(classes, axis=-1, keepdims=True) + 1e-8
      pred = np.argmax(img @ classes.T, axis=1)
      yield f"zeroshot/{a}_accuracy", metrics.accuracy(self.labels[a], pred)
      yield f"zeroshot/{a}_macro_f1", metrics.macro_f1(self.labels[a], pred, num_classes)
