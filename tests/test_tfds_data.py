"""TFDS datasets in their real layouts (coco_captions, cifar10, spoken_digit),
read with `tfds.data_source` and mapped by `config.data.fields`; no download:
`tfds.testing.mock_data`, and a coco_captions-layout dataset written here."""

import io
import os

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from cmjax import trainer  # noqa: E402
from cmjax.config_utils import load_config  # noqa: E402
from cmjax.data import datasets, decode, files, image_ops, tfds_compat  # noqa: E402

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs")
MOCK_CODE = tfds.testing.MockPolicy.USE_CODE


def _data(name, **overrides):
  import ml_collections

  c = ml_collections.ConfigDict(files.data_config("tfds", name))
  c.update(overrides)
  return c


def test_cifar10_layout_from_the_catalogue_code():
  with tfds.testing.mock_data(num_examples=12, policy=MOCK_CODE):
    ds = datasets.build(_data("cifar10", image_size=24))
    raw = tfds.data_source("cifar10", split="test")[3]
    rows = ds.source("test", seed=0)
    assert len(rows) == 12
    row = ds.eval_row(rows[3])
    names = tfds.builder("cifar10").info.features["label"].names
  assert ds.spec.modalities == ("image",)
  assert ds.spec.labels == {"label": 10}
  assert ds.class_names("label") == names  # the ClassLabel's (a prepared one names them)
  assert row["label"] == int(raw["label"])
  np.testing.assert_array_equal(
    row["image"], image_ops.resize_shorter_center_crop(raw["image"], 24)
  )
  assert row["image_present"]


def test_spoken_digit_audio_scaled_and_resampled():
  tfds_compat.allow_audio_without_tensorflow()
  with tfds.testing.mock_data(num_examples=10, policy=MOCK_CODE):
    ds = datasets.build(_data("spoken_digit", max_audio_seconds=0.01))
    raw = tfds.data_source("spoken_digit", split="train[90%:]")[0]
    row = ds.eval_row(ds.source("test", seed=0)[0])  # 'test' is train[90%:]
  assert ds.spec.modalities == ("audio",) and ds.spec.sample_rate == 8000
  want = np.asarray(raw["audio"], np.float64) / 2**15  # int16 PCM held in int64
  n = min(len(want), 80)
  np.testing.assert_allclose(row["audio"][:n], want[:n], atol=1e-7)
  assert row["audio_mask"].sum() == n
  assert row["label"] == int(raw["label"])


def test_spoken_digit_resampled_to_the_model_rate():
  tfds_compat.allow_audio_without_tensorflow()
  with tfds.testing.mock_data(num_examples=3, policy=MOCK_CODE):
    ds = datasets.build(_data("spoken_digit", sample_rate=16000, max_audio_seconds=0.02))
    raw = tfds.data_source("spoken_digit", split="train")[0]
    row = ds.eval_row(ds.source("train", seed=0)[0])
  want = decode.resample(np.asarray(raw["audio"], np.float32) / 2**15, 8000, 16000)
  n = min(len(want), 320)
  np.testing.assert_allclose(row["audio"][:n], want[:n], atol=1e-6)


# ---- coco_captions: its nested captions/text layout -------------------------


def _jpeg(rng, h, w):
  from PIL import Image

  buf = io.BytesIO()
  Image.fromarray(rng.integers(0, 256, (h, w, 3), np.uint8)).save(buf, "JPEG", quality=95)
  return buf.getvalue()


class CocoCaptionsLayout(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """coco_captions's features (as tensorflow_datasets' builder declares them,
  less the detection boxes), filled with a few made-up examples."""

  name = "coco_captions"
  VERSION = tfds.core.Version("1.1.0")
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="2014")]
  # TFDS looks for a builder's source files (checksums, docs) through
  # importlib_resources, which it does not install; this one has none.
  code_path = None

  def _info(self):
    features = tfds.features.FeaturesDict(
      {
        "image": tfds.features.Image(encoding_format="jpeg"),
        "image/filename": tfds.features.Text(),
        "image/id": np.int64,
        "captions": tfds.features.Sequence({"text": np.str_, "id": np.int64}),
      }
    )
    return tfds.core.DatasetInfo(builder=self, features=features, disable_shuffling=True)

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples(0, 24), "val": self._generate_examples(1, 8)}

  def _generate_examples(self, seed, n):
    rng = np.random.default_rng(seed)
    for i in range(n):
      words = ["a red square", "a blue circle", "two green triangles", "a cat on a mat"]
      caps = [f"{words[(i + k) % 4]} number {i}" for k in range(1 + i % 3)]
      yield (
        i,
        {
          "image": _jpeg(rng, 40 + 7 * (i % 3), 56),
          "image/filename": f"COCO_{seed}_{i:04d}.jpg",
          "image/id": 1000 * seed + i,
          "captions": {"text": caps, "id": list(range(len(caps)))},
        },
      )


@pytest.fixture(scope="module")
def coco_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("tfds")
  CocoCaptionsLayout(data_dir=str(root), file_format="array_record").download_and_prepare()
  return str(root)


def test_coco_captions_nested_layout(coco_dir):
  ds = datasets.build(_data("coco_captions", tfds_data_dir=coco_dir, image_size=32))
  assert ds.spec.modalities == ("image", "text")
  rows = ds.source("test", seed=0)
  assert len(rows) == 8
  row = rows[5]
  assert ds.captions(row) == [
    f"{w} number 5" for w in ("a blue circle", "two green triangles", "a cat on a mat")
  ]
  out = ds.eval_row(row)
  ids, _ = ds.tokenizer.pad(row["text"][0], ds.spec.features["text"].shape[0])
  np.testing.assert_array_equal(out["text"], ids)
  decoded = decode.image(CocoCaptionsLayout(data_dir=coco_dir).as_data_source("val")[5]["image"])
  np.testing.assert_array_equal(out["image"], image_ops.resize_shorter_center_crop(decoded, 32))
  # The word vocabulary comes from the training captions.
  assert ds.tokenizer.encode("a cat on a mat")[0] != ds.tokenizer.encode("zebra")[0]


def test_coco_captions_bad_field_names_the_features(coco_dir):
  with pytest.raises(ValueError, match=r"fields.text='captions/txt'.*captions/text"):
    datasets.build(
      _data(
        "coco_captions", tfds_data_dir=coco_dir, fields=dict(image="image", text="captions/txt")
      )
    )
  with pytest.raises(ValueError, match=r"(?s)cannot read TFDS dataset 'cifar10:3.0.2'.*tfds build"):
    datasets.build(_data("cifar10", tfds_data_dir=coco_dir))


CIFAR_NAMES = [
  "airplane",
  "automobile",
  "bird",
  "cat",
  "deer",
  "dog",
  "frog",
  "horse",
  "ship",
  "truck",
]


class Cifar10Layout(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """cifar10's features, with the class names a prepared cifar10 holds."""

  name = "cifar10"
  VERSION = tfds.core.Version("3.0.2")
  code_path = None

  def _info(self):
    features = tfds.features.FeaturesDict(
      {
        "id": tfds.features.Text(),
        "image": tfds.features.Image(shape=(32, 32, 3)),
        "label": tfds.features.ClassLabel(names=CIFAR_NAMES),
      }
    )
    return tfds.core.DatasetInfo(builder=self, features=features, disable_shuffling=True)

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples(8), "test": self._generate_examples(4)}

  def _generate_examples(self, n):
    from PIL import Image

    for i in range(n):
      buf = io.BytesIO()
      Image.fromarray(np.full((32, 32, 3), 20 * i, np.uint8)).save(buf, "PNG")
      yield i, {"id": f"train_{i}", "image": buf.getvalue(), "label": CIFAR_NAMES[i % 10]}


def test_prepared_class_label_names_are_the_classes(tmp_path):
  Cifar10Layout(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
  ds = datasets.build(_data("cifar10", tfds_data_dir=str(tmp_path), image_size=16))
  assert ds.class_names("label") == CIFAR_NAMES
  row = ds.eval_row(ds.source("train", seed=0)[3])
  assert row["label"] == 3 and (row["image"] == 60).all()


def _train(tmp_path, config_file, arg, **data):
  c = load_config(os.path.join(CONFIGS, config_file), arg)
  c.data.update(data)
  return trainer.train_and_evaluate(c, str(tmp_path / "w"))


def test_coco_contrastive_trains_on_mock_data(coco_dir, tmp_path):
  """Random examples in coco_captions's layout (mock_data from the prepared
  metadata); the retrieval evaluator runs on them."""
  with tfds.testing.mock_data(
    num_examples=16, policy=tfds.testing.MockPolicy.USE_FILES, data_dir=coco_dir
  ):
    metrics = _train(tmp_path, "coco_contrastive.py", "tiny,steps=3", tfds_data_dir=coco_dir)
  assert np.isfinite(metrics["train/loss"])
  assert 0 <= metrics["retrieval/image_to_text/R@5"] <= 1


@pytest.mark.parametrize("name", ["cifar10", "spoken_digit"])
def test_classify_trains_on_mock_data(name, tmp_path):
  tfds_compat.allow_audio_without_tensorflow()
  with tfds.testing.mock_data(num_examples=16, policy=MOCK_CODE):
    metrics = _train(tmp_path, "files_classify.py", f"tiny,steps=3,tfds={name}")
  assert np.isfinite(metrics["train/loss"])
  assert 0 <= metrics["classification/label/accuracy"] <= 1
