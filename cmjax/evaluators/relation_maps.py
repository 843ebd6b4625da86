"""Where a relational model looked, for a few held-out examples.

  c.evals.maps = dict(type="relation_maps", split="test", num_examples=8)

For models whose fusion records a map in flax's 'intermediates' collection
(`cmjax/models/fusion/relational.py`), each example's map over the image
patches is drawn over its image with the text it was given, the predicted and
the true answer: `<workdir>/<eval name>_examples.png` and TensorBoard, and
the maps themselves in `<workdir>/<eval name>.json`. Maps, in this order of
preference: the graph network's attention from the language modality's
tokens to the patches (`<text|audio>_cross_edges`, summed over tokens), the
relation network's pair scores summed per patch (`relation_scores`), FiLM's
max-pool winners (`pool_map`). Each map is normalised to sum to 1.

Metric: `relation_maps/entropy`, the mean normalised entropy of the maps (1: spread
evenly over the patches, 0: on one patch).
"""

from __future__ import annotations

import flax
import jax
import numpy as np

from cmjax.data import pipeline, records
from cmjax.data import spec as spec_lib
from cmjax.evaluators import captioning, common

MAP_KEYS = ("text_cross_edges", "audio_cross_edges", "relation_scores", "pool_map")


def patch_map(intermediates: dict) -> tuple[str, np.ndarray]:
  """(key used, float32 `[B, patches]` summing to 1) from a model's intermediates."""
  flat = {path[-1]: v for path, v in flax.traverse_util.flatten_dict(intermediates).items()}
  for key in MAP_KEYS:
    if key in flat:
      (value,) = flat[key]  # sow keeps a tuple
      value = np.asarray(value, np.float32)
      if value.ndim == 3:  # [B, tokens or patches, patches]: summed over the first
        value = value.sum(1)
      return key, value / np.maximum(value.sum(1, keepdims=True), 1e-12)
  raise ValueError(
    f"the model records none of {MAP_KEYS} (a relational fusion: relation_network, "
    f"graph_network or film); it records {sorted(flat)}"
  )


def overlay(image: np.ndarray, heat: np.ndarray) -> np.ndarray:
  """uint8 `[H, W, 3]` with `heat` `[s, s]` (a distribution over patches) drawn
  over it in yellow where it is above uniform: an even map leaves the image as is."""
  h, w = image.shape[:2]
  s = heat.shape[0]
  above = np.maximum(heat - 1.0 / heat.size, 0.0)
  up = np.kron(above / max(float(above.max()), 1e-12), np.ones((h // s, w // s)))
  up = np.pad(up, ((0, h - up.shape[0]), (0, w - up.shape[1])))[..., None]
  out = image.astype(np.float32) * (1 - 0.7 * up) + np.array([255.0, 220.0, 0.0]) * 0.7 * up
  return np.clip(out, 0, 255).astype(np.uint8)


@common.register("relation_maps")
class RelationMapsEvaluator:
  def __init__(self, entry, ctx: common.EvalContext):
    dataset, model = ctx.dataset, ctx.model
    self.every_steps = common.every(entry, 0)
    heads = dict(getattr(model, "heads", None) or {})
    if len(heads) != 1:
      raise ValueError(f"relation_maps needs a classifier with one head; the model has {heads}")
    self.task = next(iter(heads))
    self.classes = entry.get("class_names")
    texts: list[str] = []
    field = records.text_field(dataset.config) if dataset.config.get("text_field") else None

    def prep(record):
      texts.append(records.texts(record, field)[0] if field else "")
      return dataset.eval_row(record)

    source = dataset.source(
      entry.get("split", "test"),
      seed=common.split_seed(entry),
      num_examples=int(entry.get("num_examples", 8)),
    )
    arrays = pipeline.materialize(source, prep)
    keys = {k for m in ctx.modalities for k in spec_lib.modality(m).keys}
    self.batch = {k: v for k, v in arrays.items() if k in keys}
    self.targets = arrays[self.task]
    self.texts = texts
    self._apply = jax.jit(lambda v, b: model.apply(v, b, mutable=["intermediates"]))
    self._examples: list[dict] = []
    self._grid = None

  def _name(self, k: int) -> str:
    return str(self.classes[k]) if self.classes is not None and k < len(self.classes) else str(k)

  def run(self, variables):
    out, state = self._apply(variables, self.batch)
    key, maps = patch_map(state["intermediates"])
    preds = np.asarray(out[f"logits/{self.task}"]).argmax(-1)
    side = int(round(np.sqrt(maps.shape[1])))
    entropy = -np.sum(maps * np.log(np.maximum(maps, 1e-12)), axis=1) / np.log(maps.shape[1])
    yield "relation_maps/entropy", float(entropy.mean())
    self._examples = [
      dict(text=t, predicted=self._name(int(p)), true=self._name(int(y)), map=m.tolist())
      for t, p, y, m in zip(self.texts, preds, self.targets, maps)
    ]
    if side * side == maps.shape[1] and "image" in self.batch:
      images = [overlay(img, m.reshape(side, side)) for img, m in zip(self.batch["image"], maps)]
      captions = [
        f"{e['text']}? {e['predicted']} (true {e['true']}) [{key}]" for e in self._examples
      ]
      self._grid = captioning.captioned_grid(np.stack(images), captions)

  def artifacts(self) -> dict:
    return {"examples": self._examples}

  def pictures(self) -> dict:
    return {} if self._grid is None else {"examples": self._grid}
