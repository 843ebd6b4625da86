r"""The transfer recipes against training from scratch, on shapes, 3 seeds.

  python benchmarks/transfer_recipes.py --workdir /tmp/cmjax-transfer

* LiT (configs/shapes_lit.py, and configs/files_lit.py on the exported
  own-data example): all-MiniLM-L6-v2 as the locked text tower and a
  fresh image tower, versus both towers (the same MiniLM-sized text tower)
  trained from random initialisation; zero-shot shape / colour accuracy (shapes)
  and image<->text Recall@5 at the same steps and batch.
* Pretrain -> fine-tune (configs/shapes_transfer.py, av_digits_transfer.py):
  a contrastive run's towers start the fusion classifier, versus the classifier from scratch, at
  100%, 10% and 1% of the training labels; test accuracy at the same steps.

Each run is `train.py` in `<workdir>/<row>/seed<k>` (finished runs are reused;
an interrupted one resumes). Final metrics are kept in
`benchmarks/results/transfer_runs.json` (reused before training); the tables
print as markdown, mean ± std over the seeds.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from benchmarks import runs  # noqa: E402

flags.DEFINE_string("workdir", "/tmp/cmjax-transfer", "Run folders go in here.")
flags.DEFINE_string(
  "record",
  os.path.join(runs.ROOT, "benchmarks", "results", "transfer_runs.json"),
  "Final metrics of every run, by config argument ('' for none).",
)
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of every row.")
flags.DEFINE_list(
  "parts",
  ["finetune", "finetune_av_digits", "lit", "lit_files"],
  "finetune (shapes), finetune_av_digits, lit (shapes), lit_files (the own-data example).",
)
flags.DEFINE_integer("lit_steps", 100, "Steps of every LiT / scratch run.")
flags.DEFINE_integer("lit_batch", 64, "Batch of every LiT / scratch run.")
flags.DEFINE_integer(
  "lit_files_steps", 100, "Steps of every LiT / scratch run on the own-data example."
)
flags.DEFINE_integer("pretrain_steps", 300, "Steps of the contrastive pretraining.")
flags.DEFINE_integer("finetune_steps", 150, "Steps of every classifier run.")
FLAGS = flags.FLAGS

LABELS = ("1.0", "0.1", "0.01")


def _cell(values) -> str:
  values = np.asarray(values, np.float64)
  return f"{values.mean():.3f} ± {values.std(ddof=1) if len(values) > 1 else 0:.3f}"


def _run(config_arg: str, folder: str, steps: int) -> dict:
  return runs.train_or_reuse(config_arg, os.path.join(FLAGS.workdir, folder), steps, FLAGS.record)


def lit_table(files: bool = False) -> None:
  """LiT vs scratch on shapes, or (`files`) on the exported own-data example."""
  metrics = {
    "image→text R@5": "retrieval/image_to_text/R@5",
    "text→image R@5": "retrieval/text_to_image/R@5",
  }
  if files:
    from cmjax.data import export_example  # pylint: disable=g-import-not-at-top

    manifest = os.path.join(FLAGS.workdir, "own_data", "shapes", "manifest.jsonl")
    if not os.path.exists(manifest):
      export_example.export(os.path.join(FLAGS.workdir, "own_data"))
    steps = FLAGS.lit_files_steps
    arg = "files_lit.py:text={text},seed={seed},steps=" + f"{steps},manifest={manifest}"
    arg += ",zeroshot=label"
    metrics = {"zero-shot shape": "zeroshot/label_accuracy", **metrics}
    folder = "files_lit_{text}/seed{seed}"
  else:
    metrics = {
      "zero-shot shape": "zeroshot/shape_accuracy",
      "zero-shot colour": "zeroshot/color_accuracy",
      **metrics,
    }
    steps = FLAGS.lit_steps
    arg = "shapes_lit.py:text={text},seed={seed},steps=" + f"{steps},batch_size={FLAGS.lit_batch}"
    folder = "lit_{text}/seed{seed}"
  rows = {
    "LiT: MiniLM locked, image tower trained": "minilm",
    "both towers from scratch": "scratch",
  }
  print(f"{arg.split(':')[0]}, {steps} steps:")
  print("| text tower | " + " | ".join(metrics) + " |")
  print("|---|" + "---|" * len(metrics))
  for title, text in rows.items():
    results = [
      _run(arg.format(text=text, seed=seed), folder.format(text=text, seed=seed), steps)
      for seed in FLAGS.seeds
    ]
    print(
      f"| {title} | " + " | ".join(_cell([r[m] for r in results]) for m in metrics.values()) + " |",
      flush=True,
    )


def finetune_table(data: str = "shapes") -> None:
  """The classifier from the contrastive towers vs from scratch, per label fraction."""
  config = f"{data}_transfer.py"
  prefix = "" if data == "shapes" else f"{data}_"  # shapes' runs keep their first names
  pre = {}
  for seed in FLAGS.seeds:
    arg = f"{config}:stage=pretrain,seed={seed},steps={FLAGS.pretrain_steps}"
    _run(arg, f"{prefix}pretrain/seed{seed}", FLAGS.pretrain_steps)
    pre[seed] = os.path.join(FLAGS.workdir, f"{prefix}pretrain/seed{seed}")
  print(f"{config}, {FLAGS.pretrain_steps} pretraining and {FLAGS.finetune_steps} training steps:")
  print("| labels | from scratch | from the contrastive towers |")
  print("|---|---|---|")
  for labels in LABELS:
    cells = []
    for init in (False, True):
      accuracy = []
      for seed in FLAGS.seeds:
        arg = f"{config}:labels={labels},seed={seed},steps={FLAGS.finetune_steps}"
        if init:
          arg += f",init={pre[seed]}"
        folder = f"{prefix}finetune_{'init' if init else 'scratch'}_{labels}/seed{seed}"
        accuracy.append(_run(arg, folder, FLAGS.finetune_steps)["classification/label/accuracy"])
      cells.append(_cell(accuracy))
    print(f"| {float(labels):.0%} | {cells[0]} | {cells[1]} |", flush=True)


def main(argv):
  del argv
  if "finetune" in FLAGS.parts:
    finetune_table()
  if "finetune_av_digits" in FLAGS.parts:
    finetune_table("av_digits")
  if "lit" in FLAGS.parts:
    lit_table()
  if "lit_files" in FLAGS.parts:
    lit_table(files=True)


if __name__ == "__main__":
  app.run(main)
