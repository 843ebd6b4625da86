"""Every example's values are checked on the way into a batch: a NaN or an
out-of-range value stops the run naming the dataset, split and example, before
it reaches the model."""

import dataclasses
import re

import grain
import numpy as np
import pytest

from cmjax.data import datasets, guard, pipeline
from cmjax.data import spec as spec_lib
from cmjax.data.decode import DataError
from tests import helpers

SPEC = spec_lib.ElementSpec(
  dataset="toy",
  modalities=("image", "text", "audio"),
  features={
    "image": spec_lib.Feature((4, 4, 3), "float32"),  # a dataset's own float pixels
    **spec_lib.modality_features("text", text_len=5),
    **spec_lib.modality_features("audio", audio_samples=8),
    "label": spec_lib.Feature((), "int32"),
    "tags": spec_lib.Feature((4,), "float32"),
    "score": spec_lib.Feature((), "float32"),
    "relation": spec_lib.Feature((), "int32"),
  },
  labels={"label": 3},
  multilabels={"tags": 4},
  regressions=("score",),
  extras={"relation": "-1 where there is none"},
  vocab_size=10,
  sample_rate=16000,
)


def _good_row():
  return {
    "image": np.zeros((4, 4, 3), np.float32),
    "text": np.array([1, 9, 0, 0, 0], np.int32),
    "text_mask": np.array([1, 1, 0, 0, 0], bool),
    "audio": np.linspace(-1, 1, 8).astype(np.float32),
    "audio_mask": np.ones(8, bool),
    "label": np.int32(2),
    "tags": np.array([0, 1, 1, 0], np.float32),
    "score": np.float32(-3.5),
    "relation": np.int32(-1),  # extras have no declared range
  }


def _problems(**changes):
  row = _good_row()
  for key, value in changes.items():
    if value is None:
      del row[key]
    else:
      row[key] = value
  return guard.problems(row, SPEC.features, guard.rules(SPEC, {}))


def test_a_good_row_passes():
  assert _problems() == []


@pytest.mark.parametrize(
  "changes, message",
  [
    (
      dict(text=np.array([1, 10, 0, 0, 0], np.int32)),
      r"'text' holds token id 10, outside \[0, 9\]",
    ),
    (dict(text=np.array([-1, 1, 0, 0, 0], np.int32)), r"'text' holds token id -1"),
    (dict(label=np.int32(3)), r"'label' holds class 3, outside \[0, 2\]"),
    (dict(tags=np.array([0, 2, 0, 0], np.float32)), r"'tags' holds multi-label value 2.0"),
    (dict(score=np.float32(np.inf)), r"'score' holds inf at \(\) \(not finite\)"),
    (dict(audio=np.full(8, 300.0, np.float32)), r"'audio' holds sample 300.0.*max_abs_sample"),
    (
      dict(audio=np.array([0, 0, 0, np.nan, 0, 0, 0, 0], np.float32)),
      r"'audio' holds nan at \(3,\)",
    ),
    (dict(image=np.full((4, 4, 3), np.nan, np.float32)), r"'image' holds nan at \(0, 0, 0\)"),
    (dict(image=np.zeros((4, 5, 3), np.float32)), r"'image' has shape \(4, 5, 3\), expected"),
    (dict(text=np.zeros(5, np.int64)), r"'text' has dtype int64, expected int32"),
    (dict(label=None), r"key 'label' is missing"),
  ],
)
def test_each_bad_value_is_named(changes, message):
  found = _problems(**changes)
  assert len(found) == 1 and re.search(message, found[0]), found


def test_the_sample_limit_is_a_config_value():
  loud = np.full(8, 3.0, np.float32)
  assert guard.problems(dict(_good_row(), audio=loud), SPEC.features, guard.rules(SPEC, {}))
  relaxed = guard.rules(SPEC, {"max_abs_sample": 4.0})
  assert guard.problems(dict(_good_row(), audio=loud), SPEC.features, relaxed) == []


class _Identity(grain.transforms.RandomMap):
  def random_map(self, record, rng):
    return record["row"]


def test_guarded_preprocess_names_dataset_split_and_example():
  guarded = guard.Guarded(_Identity(), SPEC, {}, "train")
  row = _good_row()
  assert guarded.random_map((7, {"row": row}), np.random.default_rng(0)) is row
  bad = dict(row, label=np.int32(5))
  with pytest.raises(
    DataError, match=r"dataset 'toy', split 'train', example 7 \(m.jsonl:8\): 'label'"
  ):
    guarded.random_map((7, {"row": bad, "_row": "m.jsonl:8"}), np.random.default_rng(0))
  with pytest.raises(DataError, match=r"split 'train', example 3: "):  # the record's own index
    guarded.random_map({"row": bad, "index": 3}, np.random.default_rng(0))


@datasets.register("shapes_vocab_too_small_for_test")
class _VocabTooSmall(datasets.ShapesDataset):
  """Shapes whose spec declares fewer words than its tokenizer makes: the case of
  a dataset whose tokenizer and declared vocabulary disagree."""

  @property
  def spec(self):
    return dataclasses.replace(super().spec, vocab_size=8)


def test_a_token_past_the_vocabulary_stops_the_pipeline_naming_the_example():
  config = helpers.load_config("shapes_contrastive.py", "tiny")
  config.data.name = "shapes_vocab_too_small_for_test"
  it = iter(pipeline.train_dataset(config))
  with pytest.raises(DataError) as error:
    next(it)
  message = str(error.value)
  assert (
    "dataset 'shapes_vocab_too_small_for_test', split 'train', example " in message
    and "token id" in message
  )
  # The named example is one of the first batch's, and it is bad.
  index = int(message.split("example ")[1].split(":")[0])
  source = datasets.build(config.data).source("train", seed=config.seed)
  assert index in pipeline.batch_examples(config, source, 0)
