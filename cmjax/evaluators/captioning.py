"""Captioning: captions generated for held-out examples, scored by BLEU-1..4 and CIDEr-D.

  c.evals.caption = dict(type="captioning", split="test", num_examples=500,
                         beam_size=1, examples=8)

Every caption the dataset lists for an example (`dataset.captions`) is a
reference; texts are compared lowercased without punctuation
(`text_metrics.caption_tokens`). Metrics: 'captioning/bleu1'..'bleu4',
'captioning/cider', 'captioning/mean_length' (words). The first `examples`
generated captions with their references go to `<workdir>/<name>.json`, and,
for images, a grid of them with their generated captions underneath to
`<workdir>/<name>_examples.png` and TensorBoard (`pictures`).

Options: split, seed, num_examples, batch_size, beam_size (1: greedy),
length_penalty, max_len (default the decoder's), bos_id / eos_id / pad_id
(default cmjax's tokenizers'), examples.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from cmjax.data import pipeline, tokenizers
from cmjax.evaluators import common, text_metrics
from cmjax.models import captioner


@common.register("captioning")
class CaptioningEvaluator:
  def __init__(self, entry, ctx: common.EvalContext):
    t0 = time.time()
    dataset, model = ctx.dataset, ctx.model
    if not isinstance(model, captioner.Captioner):
      raise ValueError(
        f"config.evals.<name> (type 'captioning') needs a 'captioner' model, got "
        f"{type(model).__name__}"
      )
    self.every_steps = common.every(entry, 0)
    self.tokenizer = dataset.tokenizer
    self.keys = captioner.source_keys(model)
    source = dataset.source(
      entry.get("split", "test"),
      seed=common.split_seed(entry),
      num_examples=int(entry.get("num_examples", 500)),
    )
    self.references = []
    present_key = f"{model.source}_present"

    def prep(rec):
      row = dataset.eval_row(rec)
      self.references.append(dataset.captions(rec))
      present = row.get(present_key, True)
      return {"present": np.bool_(present), **{k: row[k] for k in self.keys}}

    arrays = pipeline.materialize(source, prep)
    keep = arrays["present"] & np.array([bool(r) for r in self.references])
    self.inputs = [arrays[k][keep] for k in self.keys]
    self.references = [
      [text_metrics.caption_tokens(c) for c in r] for r, k in zip(self.references, keep) if k
    ]
    self.batch_size = int(entry.get("batch_size", 100))
    self.num_examples = int(entry.get("examples", 8))
    self.generator = captioner.Generator(
      model,
      max_len=entry.get("max_len"),
      beam_size=int(entry.get("beam_size", 1)),
      length_penalty=float(entry.get("length_penalty", 0.0)),
      bos_id=int(entry.get("bos_id", tokenizers.BOS)),
      eos_id=int(entry.get("eos_id", tokenizers.EOS)),
      pad_id=int(entry.get("pad_id", tokenizers.PAD)),
    )
    self._examples = []
    logging.info(
      "captioning evaluator: %d examples from %s ready in %.1fs",
      len(self.references),
      model.source,
      time.time() - t0,
    )

  def captions(self, variables) -> list[str]:
    """Generated captions of every held-out example, as text."""
    n = self.inputs[0].shape[0]
    out = []
    for start in range(0, n, self.batch_size):
      chunk = [a[start : start + self.batch_size] for a in self.inputs]
      rows = chunk[0].shape[0]
      if rows < self.batch_size:  # one compiled shape
        chunk = [np.concatenate([c, np.repeat(c[-1:], self.batch_size - rows, 0)]) for c in chunk]
      ids = np.asarray(self.generator(variables, *chunk))[:rows]
      out += [self.tokenizer.decode(row[1:]) for row in ids]
    return out

  def run(self, variables):
    hyps = [text_metrics.caption_tokens(c) for c in self.captions(variables)]
    for n, value in enumerate(text_metrics.bleu(hyps, self.references), 1):
      yield f"captioning/bleu{n}", value
    yield "captioning/cider", text_metrics.cider_d(hyps, self.references)[0]
    yield "captioning/mean_length", float(np.mean([len(h.split()) for h in hyps]))
    self._examples = [
      dict(generated=h, references=r)
      for h, r in zip(hyps[: self.num_examples], self.references[: self.num_examples])
    ]

  def artifacts(self) -> dict:
    return {"examples": self._examples}

  def pictures(self) -> dict:
    if self.keys != ("image",) or not self._examples:
      return {}
    images = self.inputs[0][: len(self._examples)]
    return {"examples": captioned_grid(images, [e["generated"] for e in self._examples])}


def captioned_grid(images: np.ndarray, captions: list[str], scale: int = 2) -> np.ndarray:
  """uint8 `[n, H, W, 3]` images side by side, each upscaled by `scale` with its
  caption written underneath (wrapped): uint8 `[H', W', 3]`."""
  import textwrap  # pylint: disable=g-import-not-at-top

  from PIL import Image, ImageDraw  # pylint: disable=g-import-not-at-top

  h, w = images.shape[1] * scale, images.shape[2] * scale
  chars = max(w // 7, 1)  # PIL's default bitmap font: about 6 px a character
  lines = [textwrap.wrap(c, chars)[:6] or [""] for c in captions]
  text_h = 12 * max(len(l) for l in lines) + 4
  canvas = Image.new("RGB", (w * len(images), h + text_h), "white")
  draw = ImageDraw.Draw(canvas)
  for i, (image, wrapped) in enumerate(zip(images, lines)):
    canvas.paste(Image.fromarray(image).resize((w, h), Image.NEAREST), (i * w, 0))
    draw.multiline_text((i * w + 2, h + 2), "\n".join(wrapped), fill="black", spacing=2)
  return np.asarray(canvas)
