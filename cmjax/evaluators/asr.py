"""Speech recognition: held-out speech transcribed by a CTC recognizer, WER and CER.

  c.evals.asr = dict(type="asr", split="test", num_examples=500, beam_size=1)

The reference of an example is the text its speech says
(`dataset.transcript`); both sides are compared lowercased without
punctuation. Decoding is greedy (`beam_size=1`) or CTC prefix beam search.
Metrics: 'asr/wer', 'asr/cer'; the first `examples` transcripts with their
references go to `<workdir>/<name>.json`.
"""

from __future__ import annotations

import logging
import time

import jax
import numpy as np

from cmjax.data import pipeline
from cmjax.data import spec as spec_lib
from cmjax.evaluators import common, text_metrics
from cmjax.models import ctc_decoding, recognizer


@common.register("asr")
class ASREvaluator:
  def __init__(self, entry, ctx: common.EvalContext):
    t0 = time.time()
    dataset, model = ctx.dataset, ctx.model
    if not isinstance(model, recognizer.CTCRecognizer):
      raise ValueError(
        f"config.evals.<name> (type 'asr') needs a 'ctc_recognizer' model, got "
        f"{type(model).__name__}"
      )
    if not hasattr(dataset, "transcript"):
      raise ValueError(f"dataset {dataset.spec.dataset!r} gives no transcripts of its speech")
    self.every_steps = common.every(entry, 0)
    self.tokenizer = dataset.tokenizer
    self.keys = tuple(spec_lib.modality(model.source).keys)
    source = dataset.source(
      entry.get("split", "test"),
      seed=common.split_seed(entry),
      num_examples=int(entry.get("num_examples", 500)),
    )
    self.references = []

    def prep(rec):
      row = dataset.eval_row(rec)
      self.references.append(text_metrics.caption_tokens(dataset.transcript(rec)))
      return {k: row[k] for k in self.keys}

    self.inputs = pipeline.materialize(source, prep)
    self.batch_size = int(entry.get("batch_size", 100))
    self.beam_size = int(entry.get("beam_size", 1))
    self.num_examples = int(entry.get("examples", 8))
    self._apply = jax.jit(
      lambda variables, *xs: model.apply(variables, *xs, method=model.transcribe_logits)
    )
    self._examples = []
    logging.info(
      "asr evaluator: %d examples ready in %.1fs", len(self.references), time.time() - t0
    )

  def transcripts(self, variables) -> list[str]:
    n = len(self.references)
    out = []
    for start in range(0, n, self.batch_size):
      chunk = [self.inputs[k][start : start + self.batch_size] for k in self.keys]
      rows = chunk[0].shape[0]
      if rows < self.batch_size:  # one compiled shape
        chunk = [np.concatenate([c, np.repeat(c[-1:], self.batch_size - rows, 0)]) for c in chunk]
      logits, mask = (np.asarray(a)[:rows] for a in self._apply(variables, *chunk))
      for lg, m in zip(logits, mask):
        length = int(m.sum())
        if self.beam_size > 1:
          ids = ctc_decoding.prefix_beam_search(lg, length, self.beam_size)
        else:
          ids = ctc_decoding.greedy(lg, length)
        out.append(self.tokenizer.decode(ids))
    return out

  def run(self, variables):
    hyps = [text_metrics.caption_tokens(t) for t in self.transcripts(variables)]
    yield "asr/wer", text_metrics.word_error_rate(hyps, self.references)
    yield "asr/cer", text_metrics.char_error_rate(hyps, self.references)
    self._examples = [
      dict(transcript=h, reference=r)
      for h, r in zip(hyps[: self.num_examples], self.references[: self.num_examples])
    ]

  def artifacts(self) -> dict:
    return {"examples": self._examples}
