r"""Captioning and speech recognition on shapes, 3 seeds.

  python benchmarks/generation_results.py --workdir /tmp/cmjax-generation

* captioning (configs/shapes_captioning.py): BLEU-4 and CIDEr-D of greedy
  captions of 500 held-out scenes, beside the baseline that copies the caption
  of the training scene nearest in pixels.
* asr (configs/shapes_asr.py): word and character error rates on 500
  held-out utterances (held-out voices), CTC from scratch against CTC started
  from a speech tower first aligned with text (`stage=pretrain`), at 100% and
  10% of the training transcripts, the same steps for every row.

Runs go to `<workdir>/<part>/<row>/seed<k>`; final metrics are kept in
`benchmarks/results/generation_runs.json` and reused.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from benchmarks import runs  # noqa: E402

flags.DEFINE_string("workdir", "/tmp/cmjax-generation", "Run folders go in here.")
flags.DEFINE_string(
  "record",
  os.path.join(runs.ROOT, "benchmarks", "results", "generation_runs.json"),
  "Final metrics of every run, by config argument ('' for none).",
)
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of every row.")
flags.DEFINE_list("parts", ["captioning", "asr"], "captioning, asr.")
flags.DEFINE_integer("caption_steps", 400, "Steps of every captioning run.")
flags.DEFINE_integer("pretrain_steps", 400, "Steps of the speech-text alignment.")
flags.DEFINE_integer("asr_steps", 400, "Steps of every recogniser.")
flags.DEFINE_integer("batch", 64, "Batch of every run.")
FLAGS = flags.FLAGS


def _cell(values) -> str:
  v = np.asarray(values, np.float64)
  return f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0:.3f}"


def _run(config_arg: str, folder: str, steps: int) -> dict:
  return runs.train_or_reuse(config_arg, os.path.join(FLAGS.workdir, folder), steps, FLAGS.record)


def captioning_table() -> None:
  steps = FLAGS.caption_steps
  results = [
    _run(
      f"shapes_captioning.py:seed={seed},steps={steps},batch_size={FLAGS.batch}",
      f"captioning/seed{seed}",
      steps,
    )
    for seed in FLAGS.seeds
  ]
  print(f"shapes_captioning.py, {steps} steps of {FLAGS.batch}:")
  print("| captions | BLEU-4 | CIDEr-D |")
  print("|---|---|---|")
  for title, prefix in (
    ("generated (greedy)", "captioning"),
    ("nearest training scene (pixels)", "nearest_caption"),
  ):
    bleu = _cell([r[f"{prefix}/bleu4"] for r in results])
    cider = _cell([r[f"{prefix}/cider"] for r in results])
    print(f"| {title} | {bleu} | {cider} |", flush=True)


def asr_table() -> None:
  common = f"steps={FLAGS.asr_steps},batch_size={FLAGS.batch}"
  pre = {}
  for seed in FLAGS.seeds:
    arg = f"shapes_asr.py:stage=pretrain,seed={seed},steps={FLAGS.pretrain_steps},batch_size={FLAGS.batch}"
    _run(arg, f"asr/pretrain/seed{seed}", FLAGS.pretrain_steps)
    pre[seed] = os.path.join(FLAGS.workdir, f"asr/pretrain/seed{seed}")
  print(
    f"shapes_asr.py, {FLAGS.pretrain_steps} alignment steps, {FLAGS.asr_steps} CTC steps of "
    f"{FLAGS.batch}:"
  )
  print(
    "| transcripts | WER from scratch | WER text-aligned | CER from scratch | CER text-aligned |"
  )
  print("|---|---|---|---|---|")
  for fraction in ("1.0", "0.1"):
    cells = {}
    for init in (False, True):
      results = []
      for seed in FLAGS.seeds:
        arg = f"shapes_asr.py:transcripts={fraction},seed={seed},{common}"
        if init:
          arg += f",init={pre[seed]}"
        folder = f"asr/{'aligned' if init else 'scratch'}_{fraction}/seed{seed}"
        results.append(_run(arg, folder, FLAGS.asr_steps))
      cells[init] = results
    row = [_cell([r[f"asr/{m}"] for r in cells[i]]) for m in ("wer", "cer") for i in (False, True)]
    print(f"| {float(fraction):.0%} | " + " | ".join(row) + " |", flush=True)


def main(argv):
  del argv
  if "captioning" in FLAGS.parts:
    captioning_table()
  if "asr" in FLAGS.parts:
    asr_table()


if __name__ == "__main__":
  app.run(main)
