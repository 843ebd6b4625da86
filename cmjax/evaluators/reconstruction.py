"""Reconstruction: the cross-modal autoencoder's held-out errors per direction, and pictures.

  c.evals.recon = dict(type="reconstruction", split="test", num_examples=500)

Runs the model (no sampling) on `num_examples` held-out examples (rounded
down to whole batches of `batch_size`) and reports the 'reconstruction'
objective's errors: 'reconstruction/error/<s>_to_<t>' (pixel / log-mel MSE,
text cross-entropy per token) and 'reconstruction/text_accuracy/<s>_to_text'.
`pictures()` gives 'grid': the first `grid` images (top row) above their
reconstructions from each source (one row per source).
"""

from __future__ import annotations

import logging
import time

import jax
import numpy as np

from cmjax.data import pipeline
from cmjax.data import spec as spec_lib
from cmjax.evaluators import common
from cmjax.objectives import reconstruction


@common.register("reconstruction")
class ReconstructionEvaluator:
  def __init__(self, entry, ctx: common.EvalContext):
    t0 = time.time()
    dataset, model = ctx.dataset, ctx.model
    self.every_steps = common.every(entry, 0)
    self.batch_size = int(entry.get("batch_size", 100))
    n = int(entry.get("num_examples", 500))
    if n < self.batch_size:
      raise ValueError(
        f"config.evals.<name> (reconstruction): num_examples={n} is below batch_size="
        f"{self.batch_size}"
      )
    source = dataset.source(
      entry.get("split", "test"), seed=common.split_seed(entry), num_examples=n
    )
    keys = [k for m in ctx.modalities for k in spec_lib.modality(m).keys]
    keys += [k for k in (f"{m}_present" for m in ctx.modalities) if k in dataset.spec.features]

    def prep(rec):
      row = dataset.eval_row(rec)
      return {k: row[k] for k in keys}

    self.arrays = pipeline.materialize(source, prep)
    self.num_batches = n // self.batch_size
    self.grid_size = int(entry.get("grid", 8))

    def apply(variables, batch):
      out = model.apply(variables, batch, train=False)
      errors = reconstruction.direction_errors(out, batch)
      images = {
        k: v[: self.grid_size]
        for k, v in out.items()
        if k.startswith("recon/") and k.endswith("_to_image")
      }
      return errors, images

    self._apply = jax.jit(apply)
    self._grid = None
    logging.info(
      "reconstruction evaluator: %d batches of %d ready in %.1fs",
      self.num_batches,
      self.batch_size,
      time.time() - t0,
    )

  def run(self, variables):
    totals, pictures = {}, None
    for b in range(self.num_batches):
      rows = slice(b * self.batch_size, (b + 1) * self.batch_size)
      errors, images = self._apply(variables, {k: v[rows] for k, v in self.arrays.items()})
      for k, v in errors.items():
        totals[k] = totals.get(k, 0.0) + float(v) / self.num_batches
      if pictures is None:
        pictures = images
    if pictures and "image" in self.arrays:
      originals = self.arrays["image"][: self.grid_size]
      rows = [originals] + [
        np.clip(np.asarray(pictures[k]) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        for k in sorted(pictures)
      ]
      self._grid = np.concatenate([np.concatenate(list(r), axis=1) for r in rows], axis=0)
    for k, v in sorted(totals.items()):
      yield f"reconstruction/{k}", v

  def pictures(self) -> dict:
    return {} if self._grid is None else {"grid": self._grid}
