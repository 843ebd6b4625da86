r"""Writes built-in examples as ordinary files, to try the `files` dataset on.

  python -m cmjax.data.export_example --out /tmp/cmjax-own-data

writes two folders, each with its files and the same rows as `manifest.jsonl`
and `manifest.csv` (paths relative to the folder):

  shapes/   scenes as JPEG and PNG of varied sizes (48 to 160 pixels, some
            not square), their captions (a list per row), the spoken caption
            as a 22.05 kHz WAV, the first object's shape and colour names, the
            set of shapes in the scene (a list, for multi-label) and a split
  digits/   av_digits: a handwritten digit image and its spoken name (WAV),
            the digit as a class (`label`) and as a number (`value`, for
            regression), and a split

Nothing is random beyond `--seed`: the same command writes the same files.
"""

from __future__ import annotations

import argparse
import csv
import json
import os

import numpy as np
import tqdm

from cmjax.data import decode, shapes_text

EXPORT_RATE = 22050  # the WAVs' sample rate: not the models' 16 kHz, so loading resamples


def _image_file(img: np.ndarray, path: str, rng: np.random.Generator) -> None:
  """Saves `img` resized to a random size (48..160 px, aspect 3:4 to 4:3)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  h = int(rng.integers(48, 161))
  w = int(np.clip(round(h * rng.uniform(0.75, 4 / 3)), 48, 160))
  pil = Image.fromarray(img).resize((w, h), Image.Resampling.BICUBIC)
  if path.endswith(".jpg"):
    pil.save(path, quality=92)
  else:
    pil.save(path)


def _wav_file(wave: np.ndarray, rate: int, path: str) -> None:
  import soundfile  # pylint: disable=g-import-not-at-top

  soundfile.write(path, decode.resample(wave, rate, EXPORT_RATE), EXPORT_RATE, subtype="PCM_16")


def _write_manifests(folder: str, rows: list[dict]) -> None:
  with open(os.path.join(folder, "manifest.jsonl"), "w", encoding="utf-8") as f:
    for row in rows:
      f.write(json.dumps(row) + "\n")
  columns = list(rows[0])
  with open(os.path.join(folder, "manifest.csv"), "w", encoding="utf-8", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(columns)
    for row in rows:
      writer.writerow(
        [json.dumps(v) if isinstance(v, list) else v for v in (row[c] for c in columns)]
      )


def _splits(num_train: int, num_test: int):
  return [("train", i) for i in range(num_train)] + [("test", i) for i in range(num_test)]


def export_shapes(folder: str, num_train: int, num_test: int, seed: int) -> list[dict]:
  """Shapes scenes as files; returns the manifest rows."""
  from cmjax.data import shapes  # pylint: disable=g-import-not-at-top

  os.makedirs(os.path.join(folder, "images"), exist_ok=True)
  os.makedirs(os.path.join(folder, "audio"), exist_ok=True)
  sources = {
    split: shapes.ShapesSource(split=split, seed=seed, num_examples=n, speech=True)
    for split, n in (("train", num_train), ("test", num_test))
  }
  rng = np.random.default_rng(seed)
  rows = []
  for k, (split, i) in enumerate(tqdm.tqdm(_splits(num_train, num_test), desc="shapes")):
    ex = sources[split][i]
    stem = f"{k:05d}"
    image = f"images/{stem}.{'jpg' if k % 2 == 0 else 'png'}"
    _image_file(ex["image"], os.path.join(folder, image), rng)
    audio = f"audio/{stem}.wav"
    _wav_file(ex["speech"], sources[split].sample_rate, os.path.join(folder, audio))
    objects = ex["objects"][ex["objects"][:, 0] >= 0]
    rows.append(
      dict(
        image=image,
        text=list(ex["captions"]),
        audio=audio,
        label=shapes_text.SHAPES[int(ex["shape_label"])],
        color=shapes_text.COLORS[int(ex["color_label"])],
        shapes=sorted({shapes_text.SHAPES[int(s)] for s in objects[:, 0]}),
        split=split,
      )
    )
  return rows


def export_digits(folder: str, num_train: int, num_test: int, seed: int) -> list[dict]:
  """av_digits examples as files; returns the manifest rows."""
  from cmjax.data import av_digits  # pylint: disable=g-import-not-at-top

  os.makedirs(os.path.join(folder, "images"), exist_ok=True)
  os.makedirs(os.path.join(folder, "audio"), exist_ok=True)
  sources = {
    split: av_digits.AVDigitsSource(split=split, seed=seed, num_examples=n)
    for split, n in (("train", num_train), ("test", num_test))
  }
  rng = np.random.default_rng(seed + 1)
  rows = []
  for k, (split, i) in enumerate(tqdm.tqdm(_splits(num_train, num_test), desc="digits")):
    ex = sources[split][i]
    stem = f"{k:05d}"
    image = f"images/{stem}.png"
    _image_file(ex["image"], os.path.join(folder, image), rng)
    audio = f"audio/{stem}.wav"
    _wav_file(ex["speech"], sources[split].sample_rate, os.path.join(folder, audio))
    digit = int(ex["label"])
    rows.append(dict(image=image, audio=audio, label=digit, value=float(digit), split=split))
  return rows


def export(out: str, num_train: int = 320, num_test: int = 80, seed: int = 0) -> dict[str, str]:
  """Writes both folders under `out`; returns {name: path of its manifest.jsonl}."""
  manifests = {}
  for name, fn in (("shapes", export_shapes), ("digits", export_digits)):
    folder = os.path.join(out, name)
    os.makedirs(folder, exist_ok=True)
    _write_manifests(folder, fn(folder, num_train, num_test, seed))
    manifests[name] = os.path.join(folder, "manifest.jsonl")
  return manifests


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", required=True, help="folder to write (created if needed)")
  parser.add_argument("--num_train", type=int, default=320, help="training rows per folder")
  parser.add_argument("--num_test", type=int, default=80, help="held-out rows per folder")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  for name, path in export(args.out, args.num_train, args.num_test, args.seed).items():
    print(f"{name}: {path} (and manifest.csv beside it)")


if __name__ == "__main__":
  main()
