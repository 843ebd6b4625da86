"""The dataset registry: `config.data.name` -> a dataset that declares its batches.

A dataset is a class registered by name and built from `config.data`:

  @datasets.register("my_data")
  class MyData(datasets.Dataset):
    def __init__(self, data_config): ...
    @property
    def spec(self) -> ElementSpec: ...            # what its batches hold
    def source(self, split, *, seed, num_examples=None, **overrides): ...
    def preprocess(self, train: bool): ...        # grain RandomMap: record -> batch row
    def captions(self, record): ...               # optional: all captions, for retrieval
    def transcript(self, record): ...             # optional: the words its speech says

`source` returns a random-access source (`len`, `[i]`) of records;
`preprocess(train).random_map(record, rng)` turns a record into one row of a
batch, with exactly the keys and shapes of `spec.features`. The trainer, the
models, the objectives and the evaluators read the spec; none of them names a
dataset. The name before a colon selects the entry (`tfds:coco/2017` is the
`tfds` dataset with argument `coco/2017`).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from cmjax.data import records, shapes_text
from cmjax.data import spec as spec_lib
from cmjax.registry import Registry


def _import_builtin_datasets() -> None:
  # The generated datasets below register when this module loads; the others
  # live in their own modules, which import this one.
  from cmjax.data import files, webdataset  # noqa: F401  # pylint: disable=g-import-not-at-top


DATASETS = Registry(
  "dataset", config_key="config.data.name", load_builtins=_import_builtin_datasets
)
register = DATASETS.register


class Dataset:
  """Base class of datasets (documentation of the contract; see the module docstring)."""

  name = "dataset"

  def __init__(self, data_config: Mapping[str, Any]):
    self.config = data_config

  @property
  def spec(self) -> spec_lib.ElementSpec:
    raise NotImplementedError

  def source(self, split: str, *, seed: int, num_examples: int | None = None, **overrides):
    raise NotImplementedError

  def preprocess(self, train: bool = True):
    raise NotImplementedError

  def captions(self, record) -> list[str]:
    """Every caption of a record (retrieval scores each one); [] without text."""
    raise NotImplementedError(f"dataset {self.spec.dataset!r} does not list captions")

  def checked_preprocess(self, train: bool = True, split: str = "train"):
    """`preprocess(train)` with every row's shapes and values checked (a bad row
    raises a `DataError` naming this dataset, `split` and the example; see
    `cmjax/data/guard.py`). What the pipelines and evaluators use."""
    from cmjax.data import guard  # pylint: disable=g-import-not-at-top

    return guard.Guarded(self.preprocess(train), self.spec, self.config, split)

  def eval_row(self, record) -> dict:
    """`checked_preprocess(train=False)` of one held-out record, seeded by its `index`."""
    if not hasattr(self, "_eval_preprocess"):
      self._eval_preprocess = self.checked_preprocess(train=False, split="held-out")
    return self._eval_preprocess.random_map(record, np.random.default_rng(int(record["index"])))

  def train_stream(self, config, *, process_index: int, process_count: int):
    """A `grain.IterDataset` of this process's training rows for datasets read as
    a stream; None (the default) for random access through `source`."""
    del config, process_index, process_count
    return None

  def report(self) -> dict:
    """Facts about the data for the run's metrics.json (e.g. rows skipped as bad)."""
    return {}

  def num_classes(self, key: str) -> int:
    """Classes of label `key` (raises naming the dataset's labels if it has none)."""
    labels = self.spec.labels
    if key not in labels:
      raise ValueError(
        f"dataset {self.spec.dataset!r} has no label {key!r}; it has {sorted(labels)}"
      )
    return labels[key]


def build(data_config: Mapping[str, Any]) -> Dataset:
  """The dataset `config.data` names (default 'shapes')."""
  name = data_config.get("name", "shapes")
  return DATASETS.get(name.split(":", 1)[0])(data_config)


# ----------------------------------------------------------------------------
# The built-in generated datasets (and shapes prepared as a TFDS dataset)
# ----------------------------------------------------------------------------


class GeneratedDataset(Dataset):
  """Records with `image`, `captions` (lists of str), `speech` and int32 labels.

  Subclasses name their source class, its options (keys of `config.data`), their
  labels with class counts, and extras (int32 scalars) a config may ask for
  with `config.data.extras`.
  """

  source_cls: type = None
  option_keys: tuple[str, ...] = ()
  label_classes: dict[str, int] = {}
  available_extras: dict[str, str] = {}
  # Extras that are class labels (with their class counts) when a config asks
  # for them: they can then be a model head's target.
  extra_classes: dict[str, int] = {}
  # Records have 'negative_caption' (served as `negative_text` on request).
  has_negatives = False
  has_text = True
  default_num_examples: dict[str, int] = {}

  def __init__(self, data_config):
    super().__init__(data_config)
    self.name = data_config.get("name", "shapes")
    unknown = [k for k in data_config.get("extras", ()) if k not in self.available_extras]
    if unknown:
      raise ValueError(
        f"config.data.extras has {unknown}, which dataset {self.name!r} does not have; "
        f"it has {sorted(self.available_extras)}"
      )
    self.extras = tuple(data_config.get("extras", ()))
    self.tokenizer = records.make_tokenizer(data_config)
    self.negative_text = bool(data_config.get("negative_text", False))
    if self.negative_text and not self.has_negatives:
      raise ValueError(
        f"config.data.negative_text=True: dataset {self.name!r} has no negative captions"
      )

  @property
  def spec(self) -> spec_lib.ElementSpec:
    data = self.config
    modalities = ["image"]
    sizes = dict(image_size=data.image_size)
    if self.has_text:
      modalities.append("text")
      sizes["text_len"] = data.max_text_len
      records.text_field(data)  # raises on a bad text_field
    if data.speech:
      modalities.append("audio")
      sizes["audio_samples"] = records.max_audio_samples(data)
    if records.has_video(data):
      modalities.append("video")
      sizes.update(video_frames=data.video_frames, video_size=data.get("video_size", 32))
    features = {}
    for m in modalities:
      features.update(spec_lib.modality_features(m, **sizes))
    if self.negative_text:
      for key, feature in spec_lib.modality_features("text", text_len=data.max_text_len).items():
        features[f"negative_{key}"] = feature
    for key in list(self.label_classes) + list(self.extras):
      features[key] = spec_lib.Feature((), "int32")
    return spec_lib.ElementSpec(
      dataset=self.name,
      modalities=tuple(modalities),
      features=features,
      labels={
        **self.label_classes,
        **{k: self.extra_classes[k] for k in self.extras if k in self.extra_classes},
      },
      extras={k: self.available_extras[k] for k in self.extras},
      vocab_size=self.tokenizer.vocab_size if self.has_text else 0,
      sample_rate=int(data.sample_rate) if data.speech else 0,
    )

  def source(self, split, *, seed, num_examples=None, **overrides):
    options = {k: self.config[k] for k in self.option_keys if k in self.config}
    options.update(overrides)
    if num_examples is None:
      num_examples = (
        self.config.get("num_train") if split == "train" else self.default_num_examples[split]
      )
    return records.generated_source(
      self.config, self.source_cls, split, seed, num_examples, options
    )

  def captions(self, record) -> list[str]:
    return records.texts(record, records.text_field(self.config)) if self.has_text else []

  def transcript(self, record) -> str:
    """The caption (or, with `config.data.spoken='question'`, the question) the
    record's speech says."""
    if self.config.get("spoken", "caption") == "question":
      return record["question"]
    return record["captions"][int(record["speech_caption_index"])]

  def preprocess(self, train=True):
    data = self.config
    spoken = bool(data.get("text_is_speech", False))
    if spoken and not (self.has_text and data.speech):
      raise ValueError(
        f"config.data.text_is_speech=True needs text and speech (config.data.speech=True) "
        f"in dataset {self.name!r}"
      )
    if spoken and (data.get("spoken", "caption") == "question") != (
      records.text_field(data) == "question"
    ):
      raise ValueError(
        "config.data.text_is_speech=True needs the text to be what is spoken: "
        "config.data.text_field='question' with config.data.spoken='question', or neither"
      )
    return records.Preprocess(
      self.tokenizer,
      data.get("max_text_len", 0),
      records.max_audio_samples(data),
      data["speech"],
      with_video=records.has_video(data),
      text_field=records.text_field(data) if self.has_text else None,
      label_keys=tuple(self.label_classes) + self.extras,
      max_shift=int(data.get("augment_shift", 0)) if train else 0,
      spoken_text=spoken,
      negative_text=self.negative_text,
    )


@register("shapes")
class ShapesDataset(GeneratedDataset):
  """The procedural tri-modal scenes of `cmjax.data.shapes`."""

  option_keys = (
    "image_size",
    "min_objects",
    "max_objects",
    "domain",
    "class_skew",
    "speech",
    "sample_rate",
    "max_speech_seconds",
    "video_frames",
    "video_size",
    "spoken",
  )
  label_classes = {"label": 8, "shape_label": 8, "color_label": 8, "size_label": 2}
  available_extras = {
    "answer_label": "index of the answer to `question` in shapes_text.ANSWERS",
    "relation_label": "object 0 vs object 1 (shapes_text.RELATIONS index), -1 if one object",
    "question_type": "kind of `question` (shapes_text.QUESTION_TYPES index)",
    "num_objects": "objects in the scene",
    "domain": "visual domain (0 plain, 1 textured)",
  }
  has_negatives = True
  extra_classes = {
    "answer_label": len(shapes_text.ANSWERS),
    "relation_label": len(shapes_text.RELATIONS),
    "question_type": len(shapes_text.QUESTION_TYPES),
  }

  @property
  def source_cls(self):
    from cmjax.data import shapes  # pylint: disable=g-import-not-at-top

    return shapes.ShapesSource

  @property
  def default_num_examples(self):
    from cmjax.data import shapes  # pylint: disable=g-import-not-at-top

    return shapes.DEFAULT_NUM_EXAMPLES


@register("av_digits")
class AVDigitsDataset(GeneratedDataset):
  """Handwritten digits paired with spoken digit names (`cmjax.data.av_digits`)."""

  option_keys = (
    "image_size",
    "image_noise",
    "occlusion",
    "speech",
    "sample_rate",
    "snr_db",
    "class_skew",
  )
  label_classes = {"label": 10}
  available_extras = {"digit_index": "row of the digit in scikit-learn's digits"}
  has_text = False

  @property
  def source_cls(self):
    from cmjax.data import av_digits  # pylint: disable=g-import-not-at-top

    return av_digits.AVDigitsSource

  @property
  def default_num_examples(self):
    from cmjax.data import av_digits  # pylint: disable=g-import-not-at-top

    return av_digits.DEFAULT_NUM_EXAMPLES


@register("tfds")
def tfds_dataset(data_config) -> Dataset:
  """`tfds:NAME`: a dataset prepared with `tfds build`, read with `tfds.data_source`
  (array_record, no TensorFlow). With `config.data.fields`, any layout mapped
  to modalities and labels (`cmjax/data/tfds_data.py`); without, the `shapes`
  record layout that `cmjax.data.shapes_tfds.prepare_shapes_tfds` writes."""
  name = data_config.get("name", "")
  if ":" not in name:
    raise ValueError(f"config.data.name={name!r}; expected 'tfds:NAME', e.g. 'tfds:cifar10'")
  if data_config.get("fields"):
    from cmjax.data import tfds_data  # pylint: disable=g-import-not-at-top

    return tfds_data.TFDSDataset(data_config)
  return ShapesTFDSDataset(data_config)


class ShapesTFDSDataset(ShapesDataset):
  """Shapes prepared as a TFDS dataset: `prepare_shapes_tfds(data_dir, **options)`,
  then `config.data.name='tfds:shapes/<config name>'`, `config.data.tfds_data_dir`."""

  def source(self, split, *, seed, num_examples=None, **overrides):
    del seed, num_examples, overrides  # the prepared split is what it is
    name = self.name.split(":", 1)[1]
    return records.tfds_source(name, split, self.config.get("tfds_data_dir"))
