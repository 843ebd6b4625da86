"""The nearest-neighbour captioning baseline: each held-out image gets the
caption of the most similar training image, scored as 'captioning' scores.

  c.evals.nearest = dict(type="nearest_caption", features="embedding",
                         split="test", num_examples=500, num_train=10000)

Similarity is the cosine of `features`: 'embedding' (the model's
`encode_<modality>`, e.g. a contrastive or CoCa image tower) or 'pixels' (the
raw images, no model). The caption copied is the training record's first
(`dataset.captions`). Metrics: 'nearest_caption/bleu1'..'bleu4',
'nearest_caption/cider'.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from cmjax.data import pipeline
from cmjax.data import spec as spec_lib
from cmjax.evaluators import common, text_metrics


@common.register("nearest_caption")
class NearestCaptionEvaluator:
  def __init__(self, entry, ctx: common.EvalContext):
    t0 = time.time()
    dataset = ctx.dataset
    self.every_steps = common.every(entry, 0)
    self.features = entry.get("features", "embedding")
    if self.features not in ("embedding", "pixels"):
      raise ValueError(
        f"config.evals.<name> (nearest_caption): features={self.features!r}; expected "
        "'embedding' or 'pixels'"
      )
    self.modality = entry.get("modality", "image")
    keys = spec_lib.modality(self.modality).keys

    def read(split, count, seed):
      captions = []

      def prep(rec):
        captions.append(dataset.captions(rec))
        row = dataset.eval_row(rec)
        return {k: row[k] for k in keys}

      source = dataset.source(split, seed=seed, num_examples=count)
      arrays = pipeline.materialize(source, prep)
      return tuple(arrays[k] for k in keys), captions

    self.train, train_captions = read("train", int(entry.get("num_train", 10_000)), ctx.config.seed)
    self.candidates = [text_metrics.caption_tokens(c[0]) for c in train_captions]
    self.test, test_captions = read(
      entry.get("split", "test"), int(entry.get("num_examples", 500)), common.split_seed(entry)
    )
    self.references = [[text_metrics.caption_tokens(c) for c in cs] for cs in test_captions]
    if self.features == "embedding":
      method = spec_lib.modality(self.modality).encode_method
      self.encoder = common.Encoder(ctx.model, method, int(entry.get("batch_size", 250)))
    logging.info("nearest_caption evaluator ready in %.1fs", time.time() - t0)

  def _embed(self, variables, inputs):
    if self.features == "pixels":
      x = inputs[0].reshape(len(inputs[0]), -1).astype(np.float32)
      x = x - x.mean(axis=1, keepdims=True)
    else:
      x = self.encoder(variables, *inputs)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

  def run(self, variables):
    train, test = self._embed(variables, self.train), self._embed(variables, self.test)
    nearest = np.argmax(test @ train.T, axis=1)
    hyps = [self.candidates[i] for i in nearest]
    for n, value in enumerate(text_metrics.bleu(hyps, self.references), 1):
      yield f"nearest_caption/bleu{n}", value
    yield "nearest_caption/cider", text_metrics.cider_d(hyps, self.references)[0]
