r"""Shared-representation objectives on shapes at equal steps, 3 seeds.

  python benchmarks/objectives_comparison.py --workdir /tmp/cmjax-objectives

Every row is `configs/shapes_contrastive.py:loss=<row>` with the same data,
encoders, batch, steps and seeds: alignment alone (collapses), alignment with
VICReg's anti-collapse term, CLIP, SigLIP, the cross-modal autoencoder and
CoCa (CLIP + captioning); `--rows` may add 'barlow' (Barlow Twins). Columns: held-out retrieval R@5
(image<->text, image<->speech, the mean of both directions), zero-shot shape
accuracy, the linear probe of the image embedding (shape of the first object),
the spread of the unit image embeddings (near 0: collapse) and, for the
autoencoder, the pixel MSE of images reconstructed from their own code and from
the caption's. Runs go to `<workdir>/<row>/seed<k>`; final metrics are kept in
`benchmarks/results/objectives_runs.json` and reused.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from benchmarks import runs  # noqa: E402

flags.DEFINE_string("workdir", "/tmp/cmjax-objectives", "Run folders go in here.")
flags.DEFINE_string(
  "record",
  os.path.join(runs.ROOT, "benchmarks", "results", "objectives_runs.json"),
  "Final metrics of every run, by config argument ('' for none).",
)
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of every row.")
flags.DEFINE_list(
  "rows",
  ["align", "vicreg", "clip", "siglip", "autoencoder", "coca"],
  "Objectives (`loss=` of shapes_contrastive.py; 'barlow' too).",
)
flags.DEFINE_integer("steps", 300, "Steps of every run.")
flags.DEFINE_integer("batch", 64, "Batch of every run.")
FLAGS = flags.FLAGS


def _pair(a, b):
  return lambda m: 0.5 * (m[f"retrieval/{a}_to_{b}/R@5"] + m[f"retrieval/{b}_to_{a}/R@5"])


COLUMNS = {
  "image↔text R@5": _pair("image", "text"),
  "image↔speech R@5": _pair("image", "audio"),
  "zero-shot shape": lambda m: m["zeroshot/shape_accuracy"],
  "linear probe (shape)": lambda m: m["linear_probe/shape_label_accuracy"],
  "image embedding spread": lambda m: m["retrieval/image/embedding_std"],
  "image MSE (from image / text)": lambda m: (
    m.get("reconstruction/error/image_to_image"),
    m.get("reconstruction/error/text_to_image"),
  ),
}


def _cell(values) -> str:
  if isinstance(values[0], tuple):
    if values[0][0] is None:
      return "–"
    return " / ".join(_cell([v[i] for v in values]) for i in range(len(values[0])))
  v = np.asarray(values, np.float64)
  return f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0:.3f}"


def main(argv):
  del argv
  print(f"shapes_contrastive.py, {FLAGS.steps} steps of {FLAGS.batch}, seeds {FLAGS.seeds}:")
  print("| objective | " + " | ".join(COLUMNS) + " |")
  print("|---|" + "---|" * len(COLUMNS))
  for row in FLAGS.rows:
    results = []
    for seed in FLAGS.seeds:
      arg = (
        f"shapes_contrastive.py:loss={row},seed={seed},steps={FLAGS.steps},batch_size={FLAGS.batch}"
      )
      folder = os.path.join(FLAGS.workdir, row, f"seed{seed}")
      results.append(runs.train_or_reuse(arg, folder, FLAGS.steps, FLAGS.record))
    cells = [_cell([f(r) for r in results]) for f in COLUMNS.values()]
    print(f"| {row} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
  app.run(main)
