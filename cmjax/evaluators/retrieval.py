"""Cross-modal retrieval: Recall@K, rsum, median and mean rank, both directions.

For every pair of the model's modalities (image-text, image-audio, text-audio,
video-text, ...) each held-out example is a query against all examples of the
other modality. Every example has `num_captions` paraphrased captions (of the
image, or of the video clip with `config.data.text_field='video_captions'`);
as in the COCO protocol, image->text counts a hit when any of the image's
captions is retrieved, and every caption is its own text->image query.
"""

from __future__ import annotations

import itertools
import logging
import time

import numpy as np

from cmjax.data import pipeline, records
from cmjax.data import spec as spec_lib
from cmjax.evaluators import common, metrics


@common.register("retrieval")
class RetrievalEvaluator:
  def __init__(self, entry, ctx: common.EvalContext):
    t0 = time.time()
    data, dataset, model = ctx.config.data, ctx.dataset, ctx.model
    self.every_steps = common.every(entry, 0)
    k = int(entry.get("num_captions", 5))
    modalities = ctx.modalities
    field = records.text_field(data)
    source = dataset.source(
      entry.get("split", "test"),
      seed=common.split_seed(entry),
      num_examples=int(entry.get("num_examples", 1000)),
      num_captions=k,
    )
    tokenizer = dataset.tokenizer
    max_samples = records.max_audio_samples(data)

    def prep(rec):
      out = {"index": np.int32(rec["index"])}
      if "image" in modalities:
        out["image"] = rec["image"]
      if "video" in modalities:
        out["video"] = rec["video"]
      if "text" in modalities:
        out["text"], out["text_mask"] = common.tokenize_all(
          tokenizer, rec[field], data.max_text_len
        )
      if "audio" in modalities:
        out["audio"], out["audio_mask"] = records.pad_audio(rec["speech"], max_samples)
      return out

    arrays = pipeline.materialize(source, prep)
    n = arrays["index"].shape[0]
    self.inputs = {}
    # Which example every row of each modality belongs to.
    self.owner = {}
    for m in modalities:
      if m == "text":
        self.inputs[m] = (arrays["text"].reshape(n * k, -1), arrays["text_mask"].reshape(n * k, -1))
        self.owner[m] = np.repeat(np.arange(n), k)
      else:
        self.inputs[m] = tuple(arrays[key] for key in spec_lib.modality(m).keys)
        self.owner[m] = np.arange(n)
    bs = int(entry.get("batch_size", 250))
    self.encoders = {
      m: common.Encoder(model, spec_lib.modality(m).encode_method, bs) for m in self.inputs
    }
    self.pairs = list(itertools.combinations(list(self.inputs), 2))
    logging.info(
      "retrieval evaluator: %d examples x %d captions ready in %.1fs", n, k, time.time() - t0
    )

  def run(self, variables):
    emb = {m: self.encoders[m](variables, *xs) for m, xs in self.inputs.items()}
    for a, b in self.pairs:
      sim = emb[a] @ emb[b].T
      pos = self.owner[a][:, None] == self.owner[b][None, :]
      rsum = 0.0
      for q, c, s, p in ((a, b, sim, pos), (b, a, sim.T, pos.T)):
        m = metrics.retrieval_metrics(metrics.best_positive_ranks(s, p))
        rsum += m["R@1"] + m["R@5"] + m["R@10"]
        for name, value in m.items():
          yield f"retrieval/{q}_to_{c}/{name}", value
      yield f"retrieval/{a}_{b}/rsum", rsum
