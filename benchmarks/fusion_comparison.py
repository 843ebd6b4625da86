r"""Every fusion method and each unimodal baseline, on av_digits and shapes, several seeds.

  python benchmarks/fusion_comparison.py --workdir /tmp/cmjax-fusion
  python benchmarks/fusion_comparison.py --datasets av_digits --seeds 0 --only concat,image_only

Each (dataset, row, seed) is one `train.py` run in `<workdir>/<dataset>/<row>/seed<k>`
(a finished run is reused, so the command can be stopped and rerun). The
final metrics of every run are kept in `benchmarks/results/fusion_runs.json`,
the record the README tables come from: a run found there is not trained
again (`--record=''` keeps no record). It prints,
per dataset, one markdown table: accuracy and macro-F1 (mean ± std over
seeds), then the accuracy with each modality missing from every test example
and with each modality corrupted at noise level 0.5 (see the classification
evaluator).
Then, on av_digits, the best fusion method and concat with and without
training-time modality dropout (missing-modality accuracy), and on skewed shapes
(`class_skew`) plain training vs class weights vs balanced resampling
(macro-F1). Everything is also written to `<workdir>/fusion_comparison.json`.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from benchmarks import runs  # noqa: E402
from cmjax.models.fusion import known_fusions  # noqa: E402

flags.DEFINE_string("workdir", "/tmp/cmjax-fusion", "Run folders go in here.")
flags.DEFINE_string(
  "record",
  os.path.join(runs.ROOT, "benchmarks", "results", "fusion_runs.json"),
  "Final metrics of every run, by config argument: reused before "
  "training, extended after ('' for none).",
)
flags.DEFINE_list("datasets", ["av_digits", "shapes"], "av_digits and/or shapes.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of every row.")
flags.DEFINE_integer(
  "steps", 0, "Training steps of each run (0: the dataset's own, av_digits 400, shapes 300)."
)
flags.DEFINE_list("only", [], "Only these rows (e.g. concat,image_only).")
flags.DEFINE_bool("extras", True, "Also the modality-dropout and class-imbalance tables.")
flags.DEFINE_float("modality_dropout", 0.3, "Modality dropout of the dropout comparison.")
flags.DEFINE_list(
  "dropout_fusions",
  ["best", "concat"],
  "Fusion methods trained with modality dropout too ('best': the most accurate on av_digits).",
)
flags.DEFINE_float("class_skew", 1.5, "Train-label Zipf exponent of the imbalance table.")

DATASETS = {  # name -> (config file, modalities, training steps)
  "av_digits": ("av_digits_classify.py", ("image", "audio"), 400),
  "shapes": ("shapes_classify.py", ("image", "text", "audio"), 300),
}


def steps_of(dataset: str) -> int:
  return flags.FLAGS.steps or DATASETS[dataset][2]


def rows_for(dataset: str) -> dict[str, str]:
  """{row name: config argument}: unimodal baselines, then every fusion method."""
  _, modalities, _ = DATASETS[dataset]
  rows = {f"{m}_only": f"modalities={m}" for m in modalities}
  rows.update({f: f"fusion={f}" for f in known_fusions()})
  if flags.FLAGS.only:
    rows = {k: v for k, v in rows.items() if k in flags.FLAGS.only}
  return rows


def run_row(dataset: str, row: str, arg: str) -> list[dict]:
  config_file, _, _ = DATASETS[dataset]
  steps = steps_of(dataset)
  out = []
  for seed in flags.FLAGS.seeds:
    full = f"{config_file}:{arg},steps={steps},seed={seed}".replace(":,", ":")
    out.append(
      runs.train_or_reuse(
        full,
        os.path.join(flags.FLAGS.workdir, dataset, row, f"seed{seed}"),
        steps,
        record=flags.FLAGS.record,
      )
    )
  return out


def mean_std(values: list[float]) -> str:
  v = np.asarray(values, np.float64)
  return f"{v.mean():.3f} ± {v.std():.3f}" if len(v) > 1 else f"{v.mean():.3f}"


def summary(results: list[dict], modalities) -> dict:
  key = "classification/label/{}"
  out = {
    "accuracy": [r[key.format("accuracy")] for r in results],
    "macro_f1": [r[key.format("macro_f1")] for r in results],
  }
  for m in modalities:
    for col, k in (
      (f"no_{m}", f"missing_{m}_1/accuracy"),
      (f"noisy_{m}", f"noise_{m}_0.5/accuracy"),
    ):
      if key.format(k) in results[0]:
        out[col] = [r[key.format(k)] for r in results]
  return out


def table(rows: dict[str, dict], modalities) -> str:
  cols = (
    ["accuracy", "macro_f1"] + [f"no_{m}" for m in modalities] + [f"noisy_{m}" for m in modalities]
  )
  names = (
    ["accuracy", "macro-F1"]
    + [f"{m} missing" for m in modalities]
    + [f"{m} noisy" for m in modalities]
  )
  lines = ["| row | " + " | ".join(names) + " |", "|---|" + "---|" * len(cols)]
  for row, s in rows.items():
    lines.append(f"| {row} | " + " | ".join(mean_std(s[c]) if c in s else "–" for c in cols) + " |")
  return "\n".join(lines)


def main(argv):
  del argv
  report = {}
  for dataset in flags.FLAGS.datasets:
    if dataset not in DATASETS:
      raise ValueError(f"--datasets has {dataset!r}; known: {sorted(DATASETS)}")
    _, modalities, _ = DATASETS[dataset]
    rows = {
      row: summary(run_row(dataset, row, arg), modalities) for row, arg in rows_for(dataset).items()
    }
    report[dataset] = rows
    print(f"\n### {dataset}: {steps_of(dataset)} steps, seeds {flags.FLAGS.seeds}\n")
    print(table(rows, modalities))

  fused = {k: v for k, v in report.get("av_digits", {}).items() if not k.endswith("_only")}
  if flags.FLAGS.extras and fused:  # needs a fusion row to pick the best one
    best = max(fused, key=lambda k: np.mean(fused[k]["accuracy"]))
    p = flags.FLAGS.modality_dropout
    report["modality_dropout"] = {}
    for name in dict.fromkeys(best if f == "best" else f for f in flags.FLAGS.dropout_fusions):
      if name not in fused:
        continue
      dropped = summary(
        run_row(
          "av_digits", f"{name}_modality_dropout{p:g}", f"fusion={name},modality_dropout={p}"
        ),
        ("image", "audio"),
      )
      report["modality_dropout"].update(
        {name: fused[name], f"{name} + modality dropout {p:g}": dropped}
      )
    print(f"\n### av_digits: with and without modality dropout ({best} is the best fusion)\n")
    print(table(report["modality_dropout"], ("image", "audio")))

  if flags.FLAGS.extras and "shapes" in flags.FLAGS.datasets:
    skew = flags.FLAGS.class_skew
    imbalance = {}
    for remedy in ("none", "weights", "resample"):
      imbalance[remedy] = summary(
        run_row(
          "shapes",
          f"skew{skew:g}_{remedy}",
          f"modalities=image,max_objects=1,class_skew={skew},balance={remedy}",
        ),
        ("image",),
      )
    report["imbalance"] = imbalance
    print(
      f"\n### shapes, image only, one object, train labels skewed "
      f"(class_skew={skew:g}; test balanced)\n"
    )
    print(table(imbalance, ()))

  with open(os.path.join(flags.FLAGS.workdir, "fusion_comparison.json"), "w") as f:
    json.dump(report, f, indent=1)


if __name__ == "__main__":
  app.run(main)
