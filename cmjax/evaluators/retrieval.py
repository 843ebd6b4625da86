"""Cross-modal retrieval: Recall@K, rsum, median and mean rank, both directions.

For every pair of the model's modalities (image-text, image-audio, text-audio,
video-text, ...) each held-out example is a query against all examples of the
other modality. An example may have several captions (`dataset.captions`: the
built-in data's `num_captions` paraphrases, a manifest's list); as in the COCO
protocol, image->text counts a hit when any of the image's captions is
retrieved, and every caption is its own text->image query. Examples that lack
a modality (`<modality>_present` False) are neither queries nor candidates
for it.
"""

from __future__ import annotations

import itertools
import logging
import time

import numpy as np

from cmjax.data import pipeline
from cmjax.data import spec as spec_lib
from cmjax.evaluators import common, metrics


@common.register("retrieval")
class RetrievalEvaluator:
  def __init__(self, entry, ctx: common.EvalContext):
    t0 = time.time()
    dataset, model = ctx.dataset, ctx.model
    self.every_steps = common.every(entry, 0)
    modalities = ctx.modalities
    options = dict(entry.get("source_options") or {})
    if "num_captions" in entry:  # paraphrases per example of the generated datasets
      options["num_captions"] = int(entry["num_captions"])
    source = dataset.source(
      entry.get("split", "test"),
      seed=common.split_seed(entry),
      num_examples=int(entry.get("num_examples", 1000)),
      **options,
    )
    keys = [k for m in modalities if m != "text" for k in spec_lib.modality(m).keys]
    keys += [k for k in (f"{m}_present" for m in modalities) if k in dataset.spec.features]
    captions = {}

    def prep(rec):
      row = dataset.eval_row(rec)
      if "text" in modalities:
        captions[int(rec["index"])] = dataset.captions(rec)
      return {"index": np.int32(rec["index"]), **{k: row[k] for k in keys}}

    arrays = pipeline.materialize(source, prep)
    self.inputs, self.owner = _inputs_and_owners(arrays, captions, modalities, dataset)
    bs = int(entry.get("batch_size", 250))
    self.encoders = {
      m: common.Encoder(model, spec_lib.modality(m).encode_method, bs) for m in self.inputs
    }
    self.pairs = list(itertools.combinations(list(self.inputs), 2))
    logging.info(
      "retrieval evaluator: %d examples, %s ready in %.1fs",
      len(arrays["index"]),
      {m: len(o) for m, o in self.owner.items()},
      time.time() - t0,
    )

  def run(self, variables):
    # Cosine similarity: a no-op for unit-norm embeddings, and the right score
    # for models that return them unnormalised (`normalize=False`).
    emb = {m: _unit(self.encoders[m](variables, *xs)) for m, xs in self.inputs.items()}
    for m, e in emb.items():
      # Mean per-dimension spread of the unit embeddings: near 0 when they collapsed.
      yield f"retrieval/{m}/embedding_std", float(np.mean(np.std(e, axis=0)))
    for a, b in self.pairs:
      sim = emb[a] @ emb[b].T
      pos = self.owner[a][:, None] == self.owner[b][None, :]
      rsum = 0.0
      for q, c, s, p in ((a, b, sim, pos), (b, a, sim.T, pos.T)):
        answerable = p.any(axis=1)  # queries whose example has the other modality
        m = metrics.retrieval_metrics(metrics.best_positive_ranks(s[answerable], p[answerable]))
        rsum += m["R@1"] + m["R@5"] + m["R@10"]
        for name, value in m.items():
          yield f"retrieval/{q}_to_{c}/{name}", value
      yield f"retrieval/{a}_{b}/rsum", rsum


def _unit(x: np.ndarray) -> np.ndarray:
  return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _inputs_and_owners(arrays, captions, modalities, dataset):
  """Per modality: its encoder inputs for every present row, and the example
  (row of `arrays`) each input belongs to. Text has one row per caption."""
  n = len(arrays["index"])
  inputs, owner = {}, {}
  for m in modalities:
    if m == "text":
      owners, texts = [], []
      for row, index in enumerate(arrays["index"]):
        caps = captions[int(index)]
        owners += [row] * len(caps)
        texts += caps
      ids, mask = common.tokenize_all(dataset.tokenizer, texts, dataset.spec.text_length())
      inputs[m], owner[m] = (ids, mask), np.asarray(owners, np.int64)
      continue
    present = arrays.get(f"{m}_present", np.ones((n,), bool)).astype(bool)
    inputs[m] = tuple(arrays[k][present] for k in spec_lib.modality(m).keys)
    owner[m] = np.arange(n)[present]
  return inputs, owner
