r"""Writes built-in examples as ordinary files, to try the `files` dataset on.

  python -m cmjax.data.export_example --out /tmp/cmjax-own-data

writes two folders, each with its files, the same rows as `manifest.jsonl`
and `manifest.csv` (paths relative to the folder), and the same examples
again as webdataset shards (`shards/train-00000.tar`, ..., `shards/test-00000.tar`):

  shapes/   scenes as JPEG and PNG of varied sizes (48 to 160 pixels, some
            not square), their captions (a list per row), the spoken caption
            as a 22.05 kHz WAV, the first object's shape and colour names, the
            set of shapes in the scene (a list, for multi-label) and a split
  digits/   av_digits (less noisy than its benchmark setting): a handwritten
            digit image and its spoken name (WAV),
            the digit as a class (`label`) and as a number (`value`, for
            regression), and a split

Nothing is random beyond `--seed`: the same command writes the same files.
"""

from __future__ import annotations

import argparse
import csv
import io
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


def _write_shards(folder: str, rows: list[dict], per_shard: int = 100) -> dict[str, str]:
  """The rows again as webdataset shards under `folder/shards/`: `KEY.jpg` /
  `.png`, `KEY.wav`, `KEY.txt` (the first caption) and `KEY.json` (every other
  column). Returns the brace pattern of each split's shards."""
  import tarfile  # pylint: disable=g-import-not-at-top

  os.makedirs(os.path.join(folder, "shards"), exist_ok=True)
  patterns = {}
  for split in ("train", "test"):
    split_rows = [r for r in rows if r["split"] == split]
    chunks = [split_rows[i : i + per_shard] for i in range(0, len(split_rows), per_shard)]
    for n, chunk in enumerate(chunks):
      with tarfile.open(os.path.join(folder, "shards", f"{split}-{n:05d}.tar"), "w") as tar:
        for row in chunk:
          key = os.path.splitext(os.path.basename(row["image"]))[0]
          meta = {k: v for k, v in row.items() if k not in ("image", "audio", "split")}
          members = {"json": json.dumps(meta).encode()}
          if "text" in row:
            members["txt"] = row["text"][0].encode()
          for column in ("image", "audio"):
            if column in row:
              members[row[column].rsplit(".", 1)[1]] = os.path.join(folder, row[column])
          for ext, value in sorted(members.items()):
            if isinstance(value, str):
              tar.add(value, arcname=f"{key}.{ext}")
            else:
              info = tarfile.TarInfo(f"{key}.{ext}")
              info.size = len(value)
              tar.addfile(info, io.BytesIO(value))
    patterns[split] = os.path.join(
      folder, "shards", f"{split}-{{00000..{len(chunks) - 1:05d}}}.tar"
    )
  return patterns


def _sources(source_cls, num_train: int, num_test: int, **options) -> dict:
  return {
    split: source_cls(split=split, num_examples=n, **options)
    for split, n in (("train", num_train), ("test", num_test))
  }


def _examples(folder: str, sources: dict, num_train: int, num_test: int, desc: str):
  """(row number, split, example, its sample rate): the train examples, then the test ones."""
  os.makedirs(os.path.join(folder, "images"), exist_ok=True)
  os.makedirs(os.path.join(folder, "audio"), exist_ok=True)
  order = [("train", i) for i in range(num_train)] + [("test", i) for i in range(num_test)]
  for k, (split, i) in enumerate(tqdm.tqdm(order, desc=desc)):
    yield k, split, sources[split][i], sources[split].sample_rate


def _write_pair(folder: str, k: int, ex: dict, rate: int, ext: str, rng) -> tuple[str, str]:
  """Writes example `k`'s picture (as `ext`) and speech; returns their relative paths."""
  image, audio = f"images/{k:05d}.{ext}", f"audio/{k:05d}.wav"
  _image_file(ex["image"], os.path.join(folder, image), rng)
  _wav_file(ex["speech"], rate, os.path.join(folder, audio))
  return image, audio


def export_shapes(folder: str, num_train: int, num_test: int, seed: int) -> list[dict]:
  """Shapes scenes as files; returns the manifest rows."""
  from cmjax.data import shapes  # pylint: disable=g-import-not-at-top

  sources = _sources(shapes.ShapesSource, num_train, num_test, seed=seed, speech=True)
  rng = np.random.default_rng(seed)
  rows = []
  for k, split, ex, rate in _examples(folder, sources, num_train, num_test, "shapes"):
    image, audio = _write_pair(folder, k, ex, rate, "jpg" if k % 2 == 0 else "png", rng)
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

  # Milder noise than the av_digits benchmark's: a few hundred examples
  # should be enough to learn from.
  sources = _sources(
    av_digits.AVDigitsSource,
    num_train,
    num_test,
    seed=seed,
    image_noise=0.1,
    occlusion=0.0,
    snr_db=(0.0, 10.0),
  )
  rng = np.random.default_rng(seed + 1)
  rows = []
  for k, split, ex, rate in _examples(folder, sources, num_train, num_test, "digits"):
    image, audio = _write_pair(folder, k, ex, rate, "png", rng)
    digit = int(ex["label"])
    rows.append(dict(image=image, audio=audio, label=digit, value=float(digit), split=split))
  return rows


def export(out: str, num_train: int = 320, num_test: int = 80, seed: int = 0) -> dict[str, str]:
  """Writes both folders under `out`; returns {name: path of its manifest.jsonl}
  and {name + '_shards': {split: brace pattern of its webdataset shards}}."""
  manifests = {}
  for name, fn in (("shapes", export_shapes), ("digits", export_digits)):
    folder = os.path.join(out, name)
    os.makedirs(folder, exist_ok=True)
    rows = fn(folder, num_train, num_test, seed)
    _write_manifests(folder, rows)
    manifests[name] = os.path.join(folder, "manifest.jsonl")
    manifests[f"{name}_shards"] = _write_shards(folder, rows)
  return manifests


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", required=True, help="folder to write (created if needed)")
  parser.add_argument("--num_train", type=int, default=320, help="training rows per folder")
  parser.add_argument("--num_test", type=int, default=80, help="held-out rows per folder")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  for name, path in export(args.out, args.num_train, args.num_test, args.seed).items():
    if name.endswith("_shards"):
      print(f"{name}: train {path['train']}, test {path['test']}")
    else:
      print(f"{name}: {path} (and manifest.csv beside it)")


if __name__ == "__main__":
  main()
