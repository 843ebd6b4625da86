r"""Relation learning on shapes, 3 seeds: VQA, relation classification,
compositional image-text matching, spoken VQA.

  python benchmarks/relation_results.py --workdir /tmp/cmjax-relation
  python benchmarks/relation_results.py --parts=compositionality

* prior: the best accuracy from the question alone (the majority answer of
  each question string in the training split), overall and per type;
* vqa (configs/shapes_vqa.py): answer accuracy on 2,000 held-out questions,
  overall and per question type, for the question-only and image-only
  baselines, the fusion baselines and the relational models;
* relation (shapes_vqa.py:task=relation): the relation of the first named
  object to the second, from the image and "the A and the B";
* spoken (shapes_vqa.py:question=spoken): the `--spoken_fusion` model with the
  question heard instead of read, beside its typed row;
* compositionality (configs/shapes_contrastive.py): accuracy of the true
  caption against its attribute / relation / order swaps (chance 0.5) for
  CLIP with a bag-of-words text tower, CLIP, SigLIP, ITM and ITM with mined
  hard negatives.

Runs go to `<workdir>/<part>/<row>/steps<N>_seed<k>`; final metrics are kept in
`benchmarks/results/relation_runs.json` and reused.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from benchmarks import runs  # noqa: E402
from cmjax.data.shapes_text import QUESTION_TYPES, SWAP_TYPES  # noqa: E402

flags.DEFINE_string("workdir", "/tmp/cmjax-relation", "Run folders go in here.")
flags.DEFINE_string(
  "record",
  os.path.join(runs.ROOT, "benchmarks", "results", "relation_runs.json"),
  "Final metrics of every run, by config argument ('' for none).",
)
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of every row.")
flags.DEFINE_list("parts", ["vqa", "relation", "spoken", "compositionality"], "Tables to make.")
flags.DEFINE_list(
  "vqa_rows",
  [
    "question_only",
    "image_only",
    "concat",
    "cross_attention",
    "joint_transformer",
    "film",
    "relation_network",
    "graph_network",
  ],
  "VQA rows: question_only, image_only, or a fusion name.",
)
flags.DEFINE_list("relation_rows", ["text_only", "concat", "relation_network"], "Relation rows.")
flags.DEFINE_string(
  "spoken_fusion", "cross_attention", "The model of the spoken-question row (the best VQA one)."
)
flags.DEFINE_list("comp_rows", ["bow", "clip", "siglip", "itm", "itm_mined"], "Matching rows.")
flags.DEFINE_integer("vqa_steps", 1500, "Steps of every VQA / relation run.")
flags.DEFINE_integer(
  "comp_steps", 300, "Steps of every compositionality run (as the objectives comparison)."
)
flags.DEFINE_integer("batch", 64, "Batch of every run.")
FLAGS = flags.FLAGS


def _cell(values) -> str:
  v = np.asarray(values, np.float64)
  return f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0:.3f}"


def _runs(config: str, folder: str, steps: int) -> list[dict]:
  out = []
  for seed in FLAGS.seeds:
    arg = f"{config},seed={seed},steps={steps},batch_size={FLAGS.batch}"
    out.append(
      runs.train_or_reuse(
        # One folder per length: runs.py refuses a folder holding a run of another length.
        arg,
        os.path.join(FLAGS.workdir, folder, f"steps{steps}_seed{seed}"),
        steps,
        FLAGS.record,
      )
    )
  return out


def _vqa_arg(row: str, extra: str = "") -> str:
  if row == "question_only":
    return f"shapes_vqa.py:inputs=text{extra}"
  if row == "image_only":
    return f"shapes_vqa.py:inputs=image{extra}"
  return f"shapes_vqa.py:fusion={row}{extra}"


def _vqa_cells(results: list[dict]) -> list[str]:
  """Answer accuracy overall, then per question type, as table cells."""
  key = "classification/answer_label"
  cells = [_cell([r[f"{key}/accuracy"] for r in results])]
  for t in QUESTION_TYPES:
    cells.append(_cell([r[f"{key}/by_question_type/{t}/accuracy"] for r in results]))
  return cells


def vqa_table() -> None:
  steps = FLAGS.vqa_steps
  print(f"shapes_vqa.py, {steps} steps of {FLAGS.batch}, accuracy on 2,000 held-out questions:")
  print("| model | all | " + " | ".join(QUESTION_TYPES) + " |")
  print("|---" * (len(QUESTION_TYPES) + 2) + "|")
  for row in FLAGS.vqa_rows:
    results = _runs(_vqa_arg(row), f"vqa/{row}", steps)
    print(f"| {row} | " + " | ".join(_vqa_cells(results)) + " |", flush=True)


def relation_table() -> None:
  steps = FLAGS.vqa_steps
  print(f"shapes_vqa.py:task=relation, {steps} steps of {FLAGS.batch}, 2,000 held-out scenes:")
  print("| model | relation accuracy |")
  print("|---|---|")
  for row in FLAGS.relation_rows:
    arg = "shapes_vqa.py:task=relation," + (
      "inputs=text" if row == "text_only" else f"fusion={row}"
    )
    results = _runs(arg, f"relation/{row}", steps)
    cell = _cell([r["classification/relation_label/accuracy"] for r in results])
    print(f"| {row} | {cell} |", flush=True)


def spoken_table() -> None:
  steps, row = FLAGS.vqa_steps, FLAGS.spoken_fusion
  print(f"shapes_vqa.py:fusion={row}, {steps} steps of {FLAGS.batch}, typed vs spoken questions:")
  print("| question | all | " + " | ".join(QUESTION_TYPES) + " |")
  print("|---" * (len(QUESTION_TYPES) + 2) + "|")
  for question in ("typed", "spoken"):
    extra = "" if question == "typed" else ",question=spoken"
    folder = f"vqa/{row}" if question == "typed" else f"spoken/{row}"
    results = _runs(_vqa_arg(row, extra), folder, steps)
    print(f"| {question} | " + " | ".join(_vqa_cells(results)) + " |", flush=True)


def compositionality_table() -> None:
  steps = FLAGS.comp_steps
  print(
    f"shapes_contrastive.py, {steps} steps of {FLAGS.batch}: true caption vs swapped (chance 0.5)"
  )
  print("| model | " + " | ".join(SWAP_TYPES) + " | image→text R@5 |")
  print("|---" * (len(SWAP_TYPES) + 2) + "|")
  for row in FLAGS.comp_rows:
    arg = "shapes_contrastive.py:" + ("loss=clip,text=bow" if row == "bow" else f"loss={row}")
    results = _runs(arg, f"compositionality/{row}", steps)
    cells = [_cell([r[f"compositionality/{s}/accuracy"] for r in results]) for s in SWAP_TYPES]
    cells.append(_cell([r["retrieval/image_to_text/R@5"] for r in results]))
    print(f"| {row} | " + " | ".join(cells) + " |", flush=True)


def prior_table() -> None:
  """What the question alone gives: each test question answered with the answer
  most frequent for that exact question among the training split's (20,000,
  as shapes_vqa.py trains on); per type and overall."""
  from cmjax.data import shapes  # pylint: disable=g-import-not-at-top

  c = __import__("configs.shapes_vqa", fromlist=["get_config"]).get_config()
  options = dict(min_objects=c.data.min_objects, max_objects=c.data.max_objects, speech=False)
  train = shapes.ShapesSource(split="train", num_examples=c.data.num_train, **options)
  counts: dict[str, dict[str, int]] = {}
  for i in range(len(train)):
    ex = train[i]
    per = counts.setdefault(ex["question"], {})
    per[ex["answer"]] = per.get(ex["answer"], 0) + 1
  test = shapes.ShapesSource(
    split="test", num_examples=c.evals.classification.num_examples, **options
  )
  hits = {t: [] for t in QUESTION_TYPES}
  for i in range(len(test)):
    ex = test[i]
    seen = counts.get(ex["question"], {})
    guess = max(seen, key=seen.get) if seen else None
    hits[QUESTION_TYPES[int(ex["question_type"])]].append(guess == ex["answer"])
  every = [h for v in hits.values() for h in v]
  print("best question-only accuracy (majority answer per question in the train split):")
  print("| all | " + " | ".join(QUESTION_TYPES) + " |")
  print("|---" * (len(QUESTION_TYPES) + 1) + "|")
  print(
    f"| {np.mean(every):.3f} | "
    + " | ".join(f"{np.mean(hits[t]):.3f}" for t in QUESTION_TYPES)
    + " |"
  )


def main(argv):
  del argv
  tables = dict(
    prior=prior_table,
    vqa=vqa_table,
    relation=relation_table,
    spoken=spoken_table,
    compositionality=compositionality_table,
  )
  unknown = set(FLAGS.parts) - set(tables)
  if unknown:
    raise ValueError(f"--parts has {sorted(unknown)}; expected any of {sorted(tables)}")
  for part in FLAGS.parts:
    tables[part]()


if __name__ == "__main__":
  app.run(main)
