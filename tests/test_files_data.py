"""The `files` dataset: manifests (JSONL and CSV), its element spec, decoded rows,
missing modalities, labels, the errors that name the row and file, and
train.py end to end on the exported example."""

import json
import os
import re
import signal
import subprocess
import time

import numpy as np
import pytest

from cmjax.data import datasets, export_example, manifest, pipeline
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
  with pytest.raises(DataError, match="latin.csv:3: .*not UTF-8"):
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


def _wds_overrides(exported, text="json:text"):
  shards = exported["shapes_shards"]
  return [
    f"--config.data.shards={shards['train']}",
    f"--config.data.eval_shards={shards['test']}",
    f"--config.data.fields.text={text}",
  ]


@pytest.mark.slow
def test_train_on_the_exported_example_from_jsonl_csv_and_shards_gives_equal_results(
  exported, tmp_path
):
  metrics = {}
  runs = {
    fmt: ("files_contrastive.py:tiny", f"--config.data.manifest={exported['shapes'][:-5]}{fmt}")
    for fmt in ("jsonl", "csv")
  }
  runs["shards"] = ("webdataset_contrastive.py:tiny", *_wds_overrides(exported))
  for name, (config, *overrides) in runs.items():
    workdir = str(tmp_path / name)
    helpers.run_train(workdir, config, *overrides)
    with open(os.path.join(workdir, "metrics.json")) as f:
      metrics[name] = json.load(f)
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
  assert "train/loss" in kept["jsonl"] and kept["jsonl"] == kept["csv"] == kept["shards"]


@pytest.mark.slow
@pytest.mark.parametrize("stream", [False, True], ids=["indexed", "streamed"])
def test_webdataset_run_killed_and_resumed_ends_bitwise_equal(exported, tmp_path, stream):
  arg = "webdataset_contrastive.py:tiny,steps=12"
  overrides = [*_wds_overrides(exported, "txt"), "--config.checkpoint_every_steps=2"]
  if stream:
    overrides += ["--config.data.stream=true", "--config.data.shuffle_buffer=24"]
  ref = str(tmp_path / "ref")
  helpers.run_train(ref, arg, *overrides)
  killed = str(tmp_path / "killed")
  proc = subprocess.Popen(
    helpers.train_cmd(killed, arg, *overrides),
    env=helpers.subprocess_env(),
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
    cwd=helpers.ROOT,
  )
  for line in proc.stdout:  # under way, with a checkpoint or two saved
    if line.startswith("[4/"):
      break
  time.sleep(np.random.default_rng(int(time.time())).uniform(0.0, 0.5))
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not os.path.exists(os.path.join(killed, "metrics.json")), "finished before the kill"
  out = helpers.run_train(killed, arg, *overrides)
  assert "Resumed from the checkpoint" in out.stdout
  a, b = helpers.load_params(ref, 12), helpers.load_params(killed, 12)
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def _wds_config(exported):
  c = helpers.load_config("webdataset_contrastive.py", "tiny")
  shards = exported["shapes_shards"]
  c.data.update(shards=shards["train"], eval_shards=shards["test"], max_audio_seconds=0.5)
  c.batch_size = 4
  return c


def test_two_processes_read_disjoint_rows_that_make_each_global_batch(exported):
  c = _wds_config(exported)
  one = iter(pipeline.train_dataset(c))
  two = [iter(pipeline.train_dataset(c, process_index=p, process_count=2)) for p in (0, 1)]
  for _ in range(8):  # 24 rows in batches of 4: crosses an epoch boundary
    whole, halves = next(one), [next(it) for it in two]
    assert halves[0]["image"].shape[0] == 2
    assert not np.array_equal(halves[0]["image"], halves[1]["image"])
    for key in ("image", "text", "audio"):
      np.testing.assert_array_equal(np.concatenate([h[key] for h in halves]), whole[key])


def test_webdataset_iterator_state_resumes_the_same_stream(exported):
  c = _wds_config(exported)
  it = iter(pipeline.train_dataset(c))
  for _ in range(3):
    next(it)
  state = it.get_state()
  want = [next(it) for _ in range(4)]
  again = iter(pipeline.train_dataset(c))
  again.set_state(state)
  for a in want:
    b = next(again)
    for key in a:
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_brace_patterns_expand_like_webdataset():
  from cmjax.data import webdataset

  assert webdataset.expand("s/{000..002}.tar") == ["s/000.tar", "s/001.tar", "s/002.tar"]
  assert webdataset.expand("{a,b}-{8..10}.tar") == [
    "a-8.tar",
    "a-9.tar",
    "a-10.tar",
    "b-8.tar",
    "b-9.tar",
    "b-10.tar",
  ]
  assert webdataset.expand(["x.tar", "y{1..2}.tar"]) == ["x.tar", "y1.tar", "y2.tar"]


def _wds(exported, **data):
  shards = exported["shapes_shards"]
  return datasets.build(
    dict(name="webdataset", shards=shards["train"], eval_shards=shards["test"], **data)
  )


def test_webdataset_shards_give_the_manifest_rows(exported):
  """The exported shards hold the manifest's examples in its order: the same
  spec, and the same preprocessed rows for the same rng."""
  options = dict(image_size=24, max_audio_seconds=1.0, labels=dict(label="label"))
  wds = _wds(exported, fields=dict(text="json:text"), **options)
  man = _dataset(exported["shapes"], **options)
  assert wds.spec.features == man.spec.features and wds.spec.labels == man.spec.labels
  assert wds.tokenizer.words == man.tokenizer.words
  for split, train in (("train", True), ("test", False)):
    a, b = _rows(wds, split, train), _rows(man, split, train)
    assert len(a) == len(b)
    for x, y in zip(a, b):
      assert x.keys() == y.keys()
      for k in x:
        np.testing.assert_array_equal(x[k], y[k], err_msg=k)
  src = wds.source("test", seed=0)
  assert wds.captions(src[0]) == man.captions(man.source("test", seed=0)[0])
  # .txt holds one caption: the default field gives exactly that one.
  one = _wds(exported)
  assert len(one.captions(one.source("test", seed=0)[0])) == 1


def test_truncated_and_missing_shards_are_named(exported, tmp_path):
  from cmjax.data import webdataset

  shard = webdataset.expand(exported["shapes_shards"]["train"])[0]
  data = open(shard, "rb").read()
  cut = tmp_path / "cut.tar"
  cut.write_bytes(data[: len(data) // 2 + 100])
  with pytest.raises(DataError, match="cut.tar.*truncated"):
    datasets.build(dict(name="webdataset", shards=str(cut)))
  with pytest.raises(DataError, match="nowhere-00000.tar.* does not exist"):
    datasets.build(dict(name="webdataset", shards=str(tmp_path / "nowhere-{00000..00001}.tar")))
  with pytest.raises(ValueError, match="config.data.shards is required"):
    datasets.build(dict(name="webdataset"))


def test_multilabel_and_regression_targets(exported):
  ds = _dataset(
    exported["shapes"],
    modalities=("image",),
    labels=dict(
      shapes=dict(type="multilabel"), label="label", size=dict(column="color", type="class")
    ),
  )
  spec = ds.spec
  assert (
    spec.multilabels == {"shapes": len(ds.class_names("shapes"))} and "shapes" not in spec.labels
  )
  assert spec.task_kind("shapes") == "multilabel" and spec.task_kind("label") == "class"
  src = ds.source("train", seed=0)
  rows = _rows(ds, "train", False)
  for i, row in enumerate(rows):
    want = sorted(src[i]["shapes"])
    got = [ds.class_names("shapes")[k] for k in np.nonzero(row["shapes"])[0]]
    assert got == want and row["shapes"].dtype == np.float32
  digits = _dataset(exported["digits"], labels=dict(value=dict(type="regression")))
  assert digits.spec.regressions == ("value",) and digits.spec.heads() == {"value": 1}
  d_src = digits.source("test", seed=0)
  values = [float(r["value"]) for r in _rows(digits, "test", False)]
  assert values == [float(d_src[i]["value"]) for i in range(len(d_src))]
  with pytest.raises(ValueError, match=r"labels.value.type='score'"):
    _dataset(exported["digits"], labels=dict(value=dict(type="score")))


@pytest.mark.slow
@pytest.mark.parametrize(
  "arg,manifest_key,metric",
  [
    ("task=regression,label=value", "digits", "classification/value/pearson_r"),
    ("task=multilabel,label=shapes,modalities=image", "shapes", "classification/shapes/mAP"),
  ],
)
def test_files_classify_trains_regression_and_multilabel_heads(
  exported, tmp_path, arg, manifest_key, metric
):
  workdir = str(tmp_path / "run")
  helpers.run_train(
    workdir, f"files_classify.py:tiny,{arg}", f"--config.data.manifest={exported[manifest_key]}"
  )
  with open(os.path.join(workdir, "metrics.json")) as f:
    m = json.load(f)
  assert np.isfinite(m[metric]) and np.isfinite(m["train/loss"])


def test_zeroshot_on_own_data_takes_class_names_from_the_data_and_templates_from_a_file(
  exported, tmp_path
):
  import jax

  from cmjax.evaluators import common

  c = helpers.load_config("files_contrastive.py", "tiny")
  c.data.manifest = exported["shapes"]
  c.data.labels = dict(label="label")
  templates = tmp_path / "templates.txt"
  templates.write_text("a {}\na picture of a {} shape\n")
  entry = dict(
    type="zeroshot",
    split="test",
    num_examples=8,
    batch_size=4,
    tasks=dict(shape=dict(label="label", templates=str(templates))),
  )
  ctx = helpers.eval_context(c)
  ev = common.get_evaluator_cls("zeroshot")(entry, ctx)
  names = ctx.dataset.class_names("label")
  assert ev.prompts["shape"][2:] == (len(names), 2)  # classes x templates
  batch = {k: np.zeros(v.shape, v.dtype) for k, v in ctx.dataset.spec.batch(2).items()}
  variables = ctx.model.init(jax.random.key(0), batch)
  got = dict(ev.run(variables))
  assert 0 <= got["zeroshot/shape_accuracy"] <= 1
  src = ctx.dataset.source("test", seed=0)
  assert [names[i] for i in ev.labels["shape"]] == [src[i]["label"] for i in range(8)]


def _bad_data_manifest(exported, tmp_path):
  """The exported shapes rows (absolute paths) with one bad row per case; returns
  (path, {case: the row's line}). Rows 1-2 stay good, so both splits keep rows."""
  folder = os.path.dirname(exported["shapes"])
  rows = []
  for r in manifest.read(exported["shapes"]):
    r = {k: v for k, v in r.items() if k != "_row"}
    r["image"], r["audio"] = os.path.join(folder, r["image"]), os.path.join(folder, r["audio"])
    rows.append(r)
  corrupt = tmp_path / "corrupt.jpg"
  corrupt.write_bytes(open(rows[0]["image"], "rb").read()[:200])  # a JPEG cut short
  empty = tmp_path / "empty.wav"
  import soundfile

  soundfile.write(str(empty), np.zeros((0,), np.float32), 16000)
  wave = soundfile.read(rows[0]["audio"], dtype="float32")[0]
  nan_wave, loud = tmp_path / "nan.wav", tmp_path / "loud.wav"
  soundfile.write(
    str(nan_wave), np.where(np.arange(len(wave)) == 99, np.nan, wave), 16000, subtype="FLOAT"
  )
  soundfile.write(str(loud), wave * 32768, 16000, subtype="FLOAT")  # PCM counts as floats
  bad = {
    "missing file": dict(rows[2], image=str(tmp_path / "gone.png")),
    "corrupt jpeg": dict(rows[3], image=str(corrupt)),
    "empty wav": dict(rows[4], audio=str(empty)),
    "unknown label": dict(rows[5], label="blob"),
    "nan in wav": dict(rows[6], audio=str(nan_wave)),
    "unnormalised wav": dict(rows[7], audio=str(loud)),
  }
  lines = [json.dumps(r).encode() for r in rows[:2]]
  where = {}
  for case, row in bad.items():
    lines.append(json.dumps(row).encode())
    where[case] = len(lines)
  lines.append(b'{"image": "x.png", "text": "caf\xe9"}')  # not UTF-8
  where["not utf-8"] = len(lines)
  lines += [json.dumps(r).encode() for r in rows[8:]]
  path = tmp_path / "bad.jsonl"
  path.write_bytes(b"\n".join(lines) + b"\n")
  return path, where


def test_bad_data_raises_naming_the_row_or_is_skipped_and_counted(exported, tmp_path):
  path, where = _bad_data_manifest(exported, tmp_path)
  classes = sorted(
    shape
    for shape in ("circle", "square", "triangle", "diamond", "star", "cross", "hexagon", "ring")
  )
  labels = dict(label=dict(column="label", classes=classes))
  with pytest.raises(DataError, match=f"bad.jsonl:{where['not utf-8']}: not UTF-8"):
    _dataset(path, labels=labels)
  ds = _dataset(path, labels=labels, on_error="skip")
  report = ds.report()
  assert report["data/skipped_rows"] == 7
  for case, pattern in {
    "not utf-8": "not UTF-8",
    "missing file": "gone.png",
    "corrupt jpeg": "corrupt.jpg",
    "empty wav": "empty.wav.*no samples",
    "unknown label": "'blob'",
    "nan in wav": r"split '\w+', example \d+ \(bad.jsonl:\d+\): 'audio' holds nan at \(99,\)",
    "unnormalised wav": r"'audio' holds sample -?\d+\.\d+, outside \[-2.0, 2.0\]",
  }.items():
    assert any(
      re.match(rf"(bad.jsonl:{where[case]}:|dataset .*\(bad.jsonl:{where[case]}\):)", s)
      and re.search(pattern, s)
      for s in ds.skipped
    ), case
  assert sum(len(r) for r in ds.splits.values()) == 32 - 6
  # What on_error='raise' stops at: each bad row, naming the row and the file.
  pre = ds.preprocess(train=True)
  rows = {r["_row"]: r for r in manifest.read(str(path), skipped=[])}
  for case, pattern in (
    ("missing file", "gone.png"),
    ("empty wav", "no samples"),
    ("unknown label", "blob"),
  ):
    with pytest.raises(DataError, match=f"bad.jsonl:{where[case]}: .*{pattern}"):
      pre.random_map(dict(rows[f"bad.jsonl:{where[case]}"], index=0), np.random.default_rng(0))


@pytest.mark.slow
def test_train_py_stops_on_bad_data_or_skips_and_reports_it(exported, tmp_path):
  path, where = _bad_data_manifest(exported, tmp_path)
  lines = open(path, "rb").read().split(b"\n")
  del lines[where["not utf-8"] - 1]  # that one stops the manifest read itself
  path.write_bytes(b"\n".join(lines))
  proc = helpers.run_train(
    str(tmp_path / "raise"),
    "files_contrastive.py:tiny",
    f"--config.data.manifest={path}",
    check=False,
  )
  assert proc.returncode != 0 and "Traceback" not in proc.stderr
  assert proc.stderr.startswith("Bad data: ") or "\nBad data: " in proc.stderr
  assert re.search(
    r"bad\.jsonl:\d+(: (cannot read image file .*gone\.png|cannot decode|audio .*no samples)"
    r"|\): 'audio' holds (nan|sample))",
    proc.stderr,
  )
  workdir = str(tmp_path / "skip")
  helpers.run_train(
    workdir,
    "files_contrastive.py:tiny",
    f"--config.data.manifest={path}",
    "--config.data.on_error=skip",
  )
  with open(os.path.join(workdir, "metrics.json")) as f:
    m = json.load(f)
  assert m["data/skipped_rows"] == 5 and len(m["data/skipped_first"]) == 5
