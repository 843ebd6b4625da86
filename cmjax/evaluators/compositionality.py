"""Compositional image–text evaluation (in the spirit of Winoground and ARO).

  c.evals.compositionality = dict(type="compositionality", split="test", num_examples=1000)

Each held-out scene of two or more objects comes with its true caption and
three negatives in the same canonical form (`shapes_text.swapped_captions`):
attributes exchanged between the two objects, the relation inverted, and the
objects' order exchanged. A model passes an item when it scores the true
caption above the negative; chance is 0.5. The attribute and order swaps use
exactly the true caption's words, so a bag-of-words model cannot tell them
apart (it ties, and a tie, within a relative 1e-5, is a failure).

Scores: the matching head's logit (`scorer='match'`, models with
`match_image_text`, e.g. `matcher`) or the cosine of the image and text
embeddings (`scorer='cosine'`, any contrastive model). Default 'auto': the
matching head when the model has one. Metrics:
`compositionality/<swap>/accuracy` for swap in attribute, relation, order
(and `/count`), and `compositionality/mean_accuracy` over the three.
"""

from __future__ import annotations

import numpy as np

from cmjax.data import pipeline
from cmjax.data.shapes_text import SWAP_TYPES
from cmjax.evaluators import common

TIE = 1e-5  # relative score difference below which two captions tie


@common.register("compositionality")
class CompositionalityEvaluator:
  def __init__(self, entry, ctx: common.EvalContext):
    dataset, model = ctx.dataset, ctx.model
    self.every_steps = common.every(entry, 0)
    scorer = entry.get("scorer", "auto")
    has_match = hasattr(model, "match_image_text")
    if scorer == "auto":
      scorer = "match" if has_match else "cosine"
    if scorer not in ("match", "cosine"):
      raise ValueError(
        f"config.evals.<name> (compositionality): scorer={scorer!r}; expected auto, match or cosine"
      )
    if scorer == "match" and not has_match:
      raise ValueError(
        f"compositionality scorer='match' needs a model with a matching head "
        f"(match_image_text, e.g. model 'matcher'); {type(model).__name__} has none"
      )
    self.scorer = scorer
    captions: list[list[str]] = []

    def prep(record):
      if "swap_captions" not in record:
        raise ValueError(
          f"the compositionality evaluator needs records with 'swap_captions' (the shapes "
          f"dataset); dataset {dataset.spec.dataset!r} has {sorted(record)}"
        )
      captions.append(list(record["swap_captions"]))
      return {"image": dataset.eval_row(record)["image"]}

    source = dataset.source(
      entry.get("split", "test"),
      seed=common.split_seed(entry),
      num_examples=int(entry.get("num_examples", 1000)),
    )
    images = pipeline.materialize(source, prep)["image"]
    keep = np.array([bool(c[0]) for c in captions])  # scenes of one object have no swaps
    if not keep.any():
      raise ValueError(
        f"the compositionality evaluator found no held-out scene of two or more objects among "
        f"{len(captions)}; use data with max_objects >= 2 or more num_examples"
      )
    self.images = images[keep]
    captions = [c for c, k in zip(captions, keep) if k]
    max_len = dataset.spec.text_length()
    # [n, 4] texts: the true caption, then one negative per swap type ("" = none).
    self.texts = [common.tokenize_all(dataset.tokenizer, col, max_len) for col in zip(*captions)]
    self.has = np.array([[bool(t) for t in row[1:]] for row in captions]).reshape(-1, 3)
    batch = int(entry.get("batch_size", 250))
    if scorer == "match":
      self.match = common.Encoder(model, "match_image_text", batch)
    else:
      self.image_encoder = common.Encoder(model, "encode_image", batch)
      self.text_encoder = common.Encoder(model, "encode_text", batch)

  def scores(self, variables) -> np.ndarray:
    """float32 `[n, 4]`: each scene's score with its true caption and the three negatives."""
    if self.scorer == "match":
      return np.stack([self.match(variables, self.images, i, m) for i, m in self.texts], axis=1)
    img = self.image_encoder(variables, self.images)
    img = img / np.maximum(np.linalg.norm(img, axis=1, keepdims=True), 1e-12)
    cols = []
    for ids, mask in self.texts:
      txt = self.text_encoder(variables, ids, mask)
      txt = txt / np.maximum(np.linalg.norm(txt, axis=1, keepdims=True), 1e-12)
      cols.append(np.sum(img * txt, axis=1))
    return np.stack(cols, axis=1)

  def run(self, variables):
    s = self.scores(variables)
    accuracies = []
    for k, swap in enumerate(SWAP_TYPES):
      rows = self.has[:, k]
      pos, neg = s[rows, 0], s[rows, 1 + k]
      # A tie fails; float sums in another order differ by ~1e-7: that is a tie.
      wins = pos - neg > TIE * np.maximum(1.0, np.abs(pos))
      acc = float(np.mean(wins)) if rows.any() else float("nan")
      accuracies.append(acc)
      yield f"compositionality/{swap}/accuracy", acc
      yield f"compositionality/{swap}/count", int(rows.sum())
    yield "compositionality/mean_accuracy", float(np.nanmean(accuracies))
