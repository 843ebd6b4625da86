"""The `files` dataset: manifests (JSONL and CSV), its element spec, decoded rows,
missing modalities, labels, the errors that name the row and file, and
train.py end to end on the exported example."""

import json
import os

import numpy as np
import pytest

from cmjax.data import datasets, export_example, manifest
from cmjax.data import spec as spec_lib
from cmjax.data.decode import DataError
from tests import helpers


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  out = tmp_path_factory.mktemp("own")
  return export_example.export(str(out), num_train=24, num_test=8, seed=0)


def _dataset(path, **data):
  return datasets.build(dict(name="files", manifest=str(path), **data))


def _rows(dataset, split, train):
  pre = dataset.preprocess(train=train)
  src = dataset.source(split, seed=0)
  return [pre.random_map(src[i], np.random.default_rng(i)) for i in range(len(src))]


def test_jsonl_and_csv_manifests_hold_the_same_rows(exported):
  path = exported["shapes"]
  a = manifest.read(path)
  b = manifest.read(path.replace(".jsonl", ".csv"))
  assert len(a) == len(b) == 32
  for x, y in zip(a, b):
    assert {k: v for k, v in x.items() if k != "_row"} == {
      k: v for k, v in y.items() if k != "_row"
    }
  assert isinstance(b[0]["text"], list) and b[0]["_row"] == "manifest.csv:2"


def test_exported_files_are_real_and_varied(exported):
  import soundfile
  from PIL import Image

  folder = os.path.dirname(exported["shapes"])
  rows = manifest.read(exported["shapes"])
  sizes = {Image.open(os.path.join(folder, r["image"])).size for r in rows}
  formats = {Image.open(os.path.join(folder, r["image"])).format for r in rows}
  assert len(sizes) > 10 and formats == {"JPEG", "PNG"}
  assert soundfile.info(os.path.join(folder, rows[0]["audio"])).samplerate == 22050
  digits = manifest.read(exported["digits"])
  assert all(float(r["value"]) == int(r["label"]) for r in digits)


def test_spec_and_rows_match(exported):
  ds = _dataset(
    exported["shapes"],
    image_size=32,
    max_text_len=16,
    max_audio_seconds=2.0,
    labels=dict(label="label"),
  )
  spec = ds.spec
  assert spec.modalities == ("image", "text", "audio")
  assert spec.labels == {"label": len({r["label"] for r in manifest.read(exported["shapes"])})}
  assert spec.features["image"].shape == (32, 32, 3) and spec.sample_rate == 16000
  for train in (True, False):
    rows = _rows(ds, "train", train)
    batch = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    spec_lib.check_batch(batch, spec.batch(len(rows)))
    assert batch["image_present"].all() and batch["audio_mask"].any(axis=1).all()
  # Labels are indices into the sorted class names.
  names = ds.class_names("label")
  src = ds.source("test", seed=0)
  got = [names[int(r["label"])] for r in _rows(ds, "test", False)]
  assert got == [src[i]["label"] for i in range(len(src))]
  assert len(src) == 8 and len(ds.source("train", seed=0)) == 24


def test_vocabulary_comes_from_training_captions(exported):
  ds = _dataset(exported["shapes"], modalities=("image", "text"))
  caps = [c for r in manifest.read(exported["shapes"]) if r["split"] == "train" for c in r["text"]]
  ids = [ds.tokenizer.encode(c) for c in caps]
  assert all(1 not in seq for seq in ids)  # no <unk> in the training captions
  assert ds.tokenizer.decode(ds.tokenizer.encode(caps[0])) == caps[0].lower()


def _write(tmp_path, rows, name="m.jsonl"):
  path = tmp_path / name
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  return path


def test_missing_modalities_give_present_false_and_zeros(exported, tmp_path):
  folder = os.path.dirname(exported["shapes"])
  rows = manifest.read(exported["shapes"])[:4]
  for r in rows:
    for k in ("image", "audio"):
      r[k] = os.path.join(folder, r[k])  # absolute paths work too
    del r["_row"]
  rows[1]["audio"] = ""
  del rows[2]["image"]
  rows[3]["text"] = None
  ds = _dataset(_write(tmp_path, rows), image_size=16, max_audio_seconds=1.0)
  out = _rows(ds, "train", False)
  assert [bool(r["audio_present"]) for r in out] == [True, False, True, True]
  assert [bool(r["image_present"]) for r in out] == [True, True, False, True]
  assert [bool(r["text_present"]) for r in out] == [True, True, True, False]
  assert not out[1]["audio"].any() and not out[1]["audio_mask"].any()
  assert not out[2]["image"].any() and not out[3]["text"].any()


def test_bad_rows_name_the_row_and_file(exported, tmp_path):
  folder = os.path.dirname(exported["shapes"])
  good = {k: v for k, v in manifest.read(exported["shapes"])[0].items() if k != "_row"}
  good["image"] = os.path.join(folder, good["image"])
  good["audio"] = os.path.join(folder, good["audio"])
  cases = {
    "missing file": (
      dict(good, image="nowhere/x.png"),
      r"m.jsonl:2: cannot read image file .*nowhere/x.png",
    ),
    "label": (dict(good, label="blob"), r"m.jsonl:2: label 'blob' .* not one of the 3 classes"),
  }
  for name, (bad, pattern) in cases.items():
    path = _write(tmp_path, [good, bad, dict(good, label="square")])
    ds = _dataset(
      path, labels=dict(label=dict(column="label", classes=["circle", "square", good["label"]]))
    )
    pre, src = ds.preprocess(train=True), ds.source("train", seed=0)
    pre.random_map(src[0], np.random.default_rng(0))
    with pytest.raises(DataError, match=pattern):
      pre.random_map(src[1], np.random.default_rng(0))


def test_config_errors_name_the_key(exported, tmp_path):
  with pytest.raises(ValueError, match="config.data.manifest is required"):
    datasets.build(dict(name="files"))
  with pytest.raises(ValueError, match="no column 'video'"):
    _dataset(exported["shapes"], modalities=("image", "video"))
  with pytest.raises(ValueError, match=r"config.data.fields has \['picture'\]"):
    _dataset(exported["shapes"], fields=dict(picture="image"))
  with pytest.raises(ValueError, match="no 'validation' rows; its splits are"):
    _dataset(exported["shapes"]).source("validation", seed=0)
  bad = tmp_path / "bad.jsonl"
  bad.write_text('{"image": "a.png"}\n{"image": \n')
  with pytest.raises(DataError, match="bad.jsonl:2: not a JSON object"):
    _dataset(bad)
  latin = tmp_path / "latin.csv"
  latin.write_bytes(b"image,text\na.png,ok\nb.png,caf\xe9\n")
  with pytest.raises(DataError, match="latin.csv:3: not UTF-8"):
    _dataset(latin)


def test_without_a_split_column_a_fixed_tenth_is_held_out(exported, tmp_path):
  rows = [
    {k: v for k, v in r.items() if k not in ("_row", "split")}
    for r in manifest.read(exported["shapes"])
  ]
  ds = _dataset(_write(tmp_path, rows))
  assert len(ds.source("test", seed=0)) == 3 and len(ds.source("train", seed=0)) == 29
  again = _dataset(_write(tmp_path, rows))
  assert [r["image"] for r in again.splits["test"]] == [r["image"] for r in ds.splits["test"]]


def test_video_from_frame_folders_and_npy(tmp_path):
  from PIL import Image

  frames = tmp_path / "clip"
  frames.mkdir()
  for i in range(5):
    Image.fromarray(np.full((20, 30, 3), 40 * i, np.uint8)).save(frames / f"{i:03d}.png")
  np.save(tmp_path / "clip.npy", np.full((3, 8, 8, 3), 9, np.uint8))
  path = _write(tmp_path, [dict(video="clip", text="a"), dict(video="clip.npy", text="b")])
  ds = _dataset(path, holdout_fraction=0.0, video_frames=3, video_size=16)
  out = _rows(ds, "train", False)
  assert out[0]["video"].shape == (3, 16, 16, 3)
  assert [int(f.mean()) for f in out[0]["video"]] == [0, 80, 160]
  assert (out[1]["video"] == 9).all()


@pytest.mark.slow
def test_train_on_the_exported_example_from_jsonl_and_csv_gives_equal_results(exported, tmp_path):
  metrics = {}
  for fmt in ("jsonl", "csv"):
    path = exported["shapes"].replace(".jsonl", f".{fmt}")
    workdir = str(tmp_path / fmt)
    helpers.run_train(workdir, "files_contrastive.py:tiny", f"--config.data.manifest={path}")
    with open(os.path.join(workdir, "metrics.json")) as f:
      metrics[fmt] = json.load(f)
  r5 = "retrieval/image_to_text/R@5"
  assert r5 in metrics["jsonl"] and "retrieval/audio_to_image/R@5" in metrics["jsonl"]
  # Same rows, same seed: the same training and the same held-out scores.
  kept = {
    f: {
      k: v
      for k, v in m.items()
      if k.startswith(("retrieval/", "train/loss")) and "seconds" not in k
    }
    for f, m in metrics.items()
  }
  assert "train/loss" in kept["jsonl"] and kept["jsonl"] == kept["csv"]
