r"""Trains the shapes contrastive task with each encoder family and compares them.

  python benchmarks/encoder_comparison.py --workdir /tmp/cmjax-encoders

For every row below it runs `train.py` with that config variant for `--steps`
steps (a finished run in `<workdir>/<row>` is reused, an interrupted one
resumes), then times every variant's compiled train step on one real batch,
the variants interleaved, `--repeats` rounds, median. It prints two markdown
tables: held-out Recall@5 and zero-shot accuracy with the step throughput of
the image/text/audio variants, and video<->text Recall@5 of the video
encoders; each throughput is also given as a ratio to the first row of its
table, measured in the same run.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from benchmarks import runs, step_timing  # noqa: E402
from cmjax import config_utils  # noqa: E402

ROOT = runs.ROOT
flags.DEFINE_string("workdir", "/tmp/cmjax-encoders", "One run folder per row in here.")
flags.DEFINE_integer("steps", 400, "Training steps of each run.")
flags.DEFINE_integer("repeats", 3, "Timing rounds (each variant once per round).")
flags.DEFINE_integer("timed_steps", 5, "Train steps per variant per round.")
flags.DEFINE_list("only", [], "Run only these rows (names below).")

# name -> (config file, config argument, what differs from the default).
ROWS = {
  "default": ("shapes_contrastive.py", "", "ViT image, Transformer text and audio"),
  "image_resnet_gn": ("shapes_contrastive.py", "image=resnet_gn", "image: ResNet, GroupNorm"),
  "image_resnet_bn": ("shapes_contrastive.py", "image=resnet_bn", "image: ResNet, BatchNorm"),
  "text_lstm": ("shapes_contrastive.py", "text=lstm", "text: LSTM"),
  "text_gru": ("shapes_contrastive.py", "text=gru", "text: GRU"),
  "audio_cnn": ("shapes_contrastive.py", "audio=cnn", "audio: CNN"),
  "audio_ast": ("shapes_contrastive.py", "audio=ast", "audio: AST (spectrogram ViT)"),
  "video_frames": (
    "shapes_video.py",
    "video=frames",
    "video: per-frame ViT + temporal Transformer",
  ),
  "video_tubelet": ("shapes_video.py", "video=tubelet_vit", "video: tubelet ViT"),
}
IMAGE_COLUMNS = [
  ("image->text R@5", "retrieval/image_to_text/R@5"),
  ("text->image R@5", "retrieval/text_to_image/R@5"),
  ("image->speech R@5", "retrieval/image_to_audio/R@5"),
  ("speech->image R@5", "retrieval/audio_to_image/R@5"),
  ("zero-shot shape", "zeroshot/shape_accuracy"),
]
VIDEO_COLUMNS = [
  ("video->text R@5", "retrieval/video_to_text/R@5"),
  ("text->video R@5", "retrieval/text_to_video/R@5"),
  ("video->text R@1", "retrieval/video_to_text/R@1"),
]


def config_arg(name: str) -> str:
  config_file, arg, _ = ROWS[name]
  return f"{config_file}:{','.join(a for a in (arg, f'steps={flags.FLAGS.steps}') if a)}"


def train(name: str) -> dict:
  """Final metrics of the row's run, training it first unless already done."""
  return runs.train_or_reuse(
    config_arg(name), os.path.join(flags.FLAGS.workdir, name), flags.FLAGS.steps
  )


def step_rates(names: list[str]) -> dict[str, float]:
  """Median examples/s of each row's train step, rows interleaved."""
  steps = {}
  for name in names:
    config_file, arg, _ = ROWS[name]
    steps[name] = step_timing.CompiledStep(
      config_utils.load_config(os.path.join(ROOT, "configs", config_file), arg or None)
    )
  rates = {name: [] for name in names}
  for _ in range(flags.FLAGS.repeats):
    for name in names:
      rates[name].append(steps[name].run(flags.FLAGS.timed_steps))
  return {name: float(np.median(r)) for name, r in rates.items()}


def table(names, metrics, rates, columns) -> str:
  head = ["row", "encoders"] + [c for c, _ in columns] + ["train step ex/s", "vs first row"]
  lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
  base = rates[names[0]]
  for name in names:
    cells = [name, ROWS[name][2]]
    cells += [f"{metrics[name].get(key, float('nan')):.3f}" for _, key in columns]
    cells += [f"{rates[name]:.0f}", f"{rates[name] / base:.2f}x"]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def main(argv):
  del argv
  names = flags.FLAGS.only or list(ROWS)
  unknown = sorted(set(names) - set(ROWS))
  if unknown:
    raise ValueError(f"--only names unknown rows {unknown}; rows: {list(ROWS)}")
  metrics = {name: train(name) for name in names}
  rates = step_rates(names)
  still = [n for n in names if not n.startswith("video")]
  video = [n for n in names if n.startswith("video")]
  print(
    f"\n{flags.FLAGS.steps} steps of batch 128 each; held-out test split; "
    f"step throughput: median of {flags.FLAGS.repeats} rounds of "
    f"{flags.FLAGS.timed_steps} steps, {os.cpu_count()} CPU cores\n"
  )
  if still:
    print(table(still, metrics, rates, IMAGE_COLUMNS) + "\n")
  if video:
    print(table(video, metrics, rates, VIDEO_COLUMNS))
  with open(os.path.join(flags.FLAGS.workdir, "comparison.json"), "w") as f:
    json.dump({"metrics": metrics, "examples_per_s": rates}, f, indent=1)


if __name__ == "__main__":
  app.run(main)
