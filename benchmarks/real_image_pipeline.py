r"""Preprocessing real JPEGs against the train step's appetite, in one run.

  python benchmarks/real_image_pipeline.py --out=benchmarks/results/real_image_pipeline_cpu.json

Writes `--images` photo-sized JPEGs (640x480, textured content, quality 90),
and the same pictures as img2dataset stores them by default (256x256, centre
crop), with a manifest and captions, then measures on one core:
  1. decode (libjpeg's scaled decoding, to the pixels each random crop
     needs: `files.train_image`) + random-resized crop (8% to 100% of the
     area) + horizontal flip alone, at 64 and 224 pixels (examples/s, median
     of 3 passes), for both sizes of JPEG;
  2. for comparison, the 640x480 view decoded at the scale the smallest
     possible crop needs (what drawing the crop first avoids), and the time
     to decode one 640x480 JPEG at 1/1, 1/2, 1/4 and 1/8 scale;
  3. the `files` dataset's whole training pipeline at the default size (64
     pixels, image + caption, 0 worker processes: grain, decode, crop,
     tokenize, batch) on the 640x480 JPEGs;
and, in the same run, the default experiment's compiled train step
(`configs/shapes_contrastive.py`, examples/s). Ratios above 1 mean one core of
preprocessing keeps up with the step; `data.num_workers` multiplies it.
"""

import json
import math
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from benchmarks import step_timing  # noqa: E402
from cmjax import config_utils  # noqa: E402
from cmjax.data import decode, files, image_ops, pipeline  # noqa: E402

flags.DEFINE_integer("images", 200, "JPEG files written and read.")
flags.DEFINE_string("out", "", "Optional JSON file for every number.")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AUGMENT = dict(crop_scale=(0.08, 1.0), flip=True, color_jitter=0.0)


def write_photos(folder: str, n: int, side: int = 0) -> list[str]:
  """n textured 640x480 JPEGs (smooth colour fields plus grain, like photos
  compress); with `side`, resized and centre-cropped to side x side."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  paths = []
  for i in range(n):
    coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(coarse).resize((640, 480), Image.Resampling.BICUBIC))
    img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
    if side:
      img = image_ops.resize_shorter_center_crop(img, side)
    path = os.path.join(folder, f"{i:05d}_{side or 'photo'}.jpg")
    Image.fromarray(img).save(path, quality=90)
    paths.append(path)
  return paths


def crop_rate(paths: list[str], size: int) -> float:
  """Examples/s of decode + random-resized crop + flip on one core."""
  rates = []
  for p in range(3):
    rng = np.random.default_rng(p)
    t = time.perf_counter()
    for path in paths:
      files.train_image(path, size, rng, AUGMENT)
    rates.append(len(paths) / (time.perf_counter() - t))
  return statistics.median(rates)


def worst_case_crop_rate(paths: list[str], size: int) -> float:
  """The same view, decoded at the scale the smallest possible crop needs
  (what drawing the crop first avoids)."""
  min_side = math.ceil(size / math.sqrt(0.08 * 3 / 4))  # 8 % of the area, aspect 3/4
  rates = []
  for p in range(3):
    rng = np.random.default_rng(p)
    t = time.perf_counter()
    for path in paths:
      img = decode.image(path, min_side=min_side)
      image_ops.train_view(img, size, rng, scale=(0.08, 1.0), flip=True)
    rates.append(len(paths) / (time.perf_counter() - t))
  return statistics.median(rates)


def decode_ms(paths: list[str], scale: int) -> float:
  """Milliseconds to decode one JPEG at 1/scale of its size (libjpeg's scaled decoding)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  times = []
  for _ in range(3):
    t = time.perf_counter()
    for path in paths:
      with Image.open(path) as img:
        img.draft("RGB", (img.size[0] // scale, img.size[1] // scale))
        img.load()
    times.append((time.perf_counter() - t) / len(paths) * 1e3)
  return statistics.median(times)


def files_pipeline_rate(folder: str, paths: list[str], batches: int = 10) -> float:
  """Examples/s of the files dataset's training pipeline (image + caption, 64 px)."""
  manifest = os.path.join(folder, "manifest.jsonl")
  with open(manifest, "w") as f:
    for i, path in enumerate(paths):
      f.write(json.dumps({"image": os.path.basename(path), "text": f"photo number {i}"}) + "\n")
  config = config_utils.load_config(os.path.join(ROOT, "configs", "files_contrastive.py"))
  config.data.manifest = manifest
  config.data.holdout_fraction = 0.0
  it = iter(pipeline.train_dataset(config))
  next(it)
  t = time.perf_counter()
  for _ in range(batches):
    next(it)
  return batches * config.batch_size / (time.perf_counter() - t)


def main(argv):
  del argv
  config = config_utils.load_config(os.path.join(ROOT, "configs", "shapes_contrastive.py"))
  step = step_timing.CompiledStep(config).run(10)
  with tempfile.TemporaryDirectory() as folder:
    paths = write_photos(folder, flags.FLAGS.images)
    small = write_photos(folder, flags.FLAGS.images, side=256)
    result = {
      "train_step_examples_per_s": step,
      "decode_crop_flip_64_per_core": crop_rate(paths, 64),
      "decode_crop_flip_224_per_core": crop_rate(paths, 224),
      "decode_crop_flip_64_per_core_256px_jpegs": crop_rate(small, 64),
      "decode_crop_flip_224_per_core_256px_jpegs": crop_rate(small, 224),
      "worst_case_scale_64_per_core": worst_case_crop_rate(paths, 64),
      "files_pipeline_64_per_core": files_pipeline_rate(folder, paths),
      "decode_ms_640x480": {f"1/{k}": decode_ms(paths, k) for k in (1, 2, 4, 8)},
      "images": len(paths),
    }
  print("| on one core | examples/s | / train step |")
  print("|---|---|---|")
  print(f"| default train step (shapes_contrastive) | {step:.0f} | 1.0x |")
  for key, label in (
    ("decode_crop_flip_64_per_core", "640x480 JPEGs: decode + random-resized crop + flip, 64 px"),
    ("decode_crop_flip_224_per_core", "640x480 JPEGs: decode + random-resized crop + flip, 224 px"),
    ("decode_crop_flip_64_per_core_256px_jpegs", "256x256 JPEGs: the same, 64 px"),
    ("decode_crop_flip_224_per_core_256px_jpegs", "256x256 JPEGs: the same, 224 px"),
    ("worst_case_scale_64_per_core", "640x480, 64 px, decoded for the smallest crop"),
    ("files_pipeline_64_per_core", "files dataset pipeline, 640x480, 64 px, image + caption"),
  ):
    print(f"| {label} | {result[key]:.0f} | {result[key] / step:.1f}x |")
  print("decode of a 640x480 JPEG, ms:", result["decode_ms_640x480"])
  if flags.FLAGS.out:
    with open(flags.FLAGS.out, "w") as f:
      json.dump(result, f, indent=2)
    print(f"Wrote {flags.FLAGS.out}")


if __name__ == "__main__":
  app.run(main)
