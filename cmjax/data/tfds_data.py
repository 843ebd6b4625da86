"""TFDS datasets in their own layouts, read with `tfds.data_source` (no TensorFlow).

  config.data.name = "tfds:coco_captions/2014:1.1.0"
  config.data.tfds_data_dir = "/data/tfds"          # where `tfds build` wrote it
  config.data.fields = dict(image="image", text="captions/text")
  config.data.labels = dict(label="label")          # class names from its ClassLabel
  config.data.splits = dict(train="train", test="val")

`fields` maps each modality (image, text, audio) to a feature of the TFDS
record, nested features joined by '/' (`captions/text`: the `text` of every
entry of the `captions` sequence); `labels` maps label keys to features as in
the `files` dataset (`cmjax/data/files.py`), a `ClassLabel`'s names being the
classes. `splits` maps cmjax's 'train' and 'test' to TFDS split strings,
slices included (`train[:90%]`). The layouts of a few catalogue datasets are
known (`LAYOUTS`; `files.data_config('tfds:cifar10')` fills them in).

Rows then go through the `files` dataset's preprocessing: images resized and
cropped (randomly in training), captions tokenized, audio (a TFDS `Audio`
feature: integer PCM at the feature's `sample_rate`) scaled to [-1, 1],
resampled to `config.data.sample_rate` and cropped or padded.
"""

from __future__ import annotations

import numpy as np
import tqdm

from cmjax.data import datasets, decode, files, tokenizers
from cmjax.data.decode import DataError

# Known layouts of catalogue datasets: the config keys they fill in.
LAYOUTS = {
  "coco_captions": dict(
    version="coco_captions/2014:1.1.0",
    fields=dict(image="image", text="captions/text"),
    splits=dict(train="train", test="val"),
  ),
  "cifar10": dict(
    version="cifar10:3.0.2",
    fields=dict(image="image"),
    labels=dict(label=dict(column="label")),
    splits=dict(train="train", test="test"),
  ),
  "spoken_digit": dict(
    version="spoken_digit:1.0.9",
    fields=dict(audio="audio"),
    labels=dict(label=dict(column="label")),
    # It has one split: the last 10 % of it is held out.
    splits=dict(train="train[:90%]", test="train[90%:]"),
    sample_rate=8000,
  ),
}


def layout(name: str) -> dict:
  """The config keys of a known dataset's layout (`name` as in the catalogue)."""
  base = name.split("/")[0].split(":")[0]
  if base not in LAYOUTS:
    raise ValueError(
      f"no known TFDS layout for {name!r} (known: {sorted(LAYOUTS)}); set "
      "config.data.name='tfds:NAME', config.data.fields and config.data.splits yourself"
    )
  return dict(LAYOUTS[base])


def _walk(container, path: str):
  """`container[path]`, where `path` may join nested keys with '/' (a key may
  itself hold a '/', as `image/filename` does)."""
  if path in container:
    return container[path]
  parts = path.split("/")
  for i in range(len(parts) - 1, 0, -1):
    head = "/".join(parts[:i])
    if head in container:
      inner = container[head]
      inner = getattr(inner, "feature", inner)  # a Sequence feature's entries
      return _walk(inner, "/".join(parts[i:]))
  raise KeyError(path)


def _feature_keys(features, prefix: str = "") -> list[str]:
  """Every feature path of a FeaturesDict, nested ones joined by '/'."""
  out = []
  for key in features.keys():
    feature = features[key]
    inner = getattr(feature, "feature", feature)
    if hasattr(inner, "keys"):
      out.extend(_feature_keys(inner, f"{prefix}{key}/"))
    else:
      out.append(f"{prefix}{key}")
  return out


def _text(value) -> list[str]:
  """A Text feature (bytes / str), or a sequence of them -> list of str."""
  values = value.tolist() if isinstance(value, np.ndarray) else value
  if not isinstance(values, (list, tuple)):
    values = [values]
  try:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]
  except UnicodeDecodeError as e:
    raise DataError(f"text is not UTF-8: {e}") from None


def _label(value):
  """A 0-d array -> its scalar; a 1-d one -> a list (multi-label); bytes -> str."""
  if isinstance(value, np.ndarray):
    value = value.item() if value.ndim == 0 else value.tolist()
  if isinstance(value, bytes):
    return value.decode("utf-8", "replace")
  if isinstance(value, list):
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in value]
  return value


class TFDSRows:
  """A TFDS data source whose records come out as rows of the `files` dataset:
  `{modality: value, label feature: value, '_row': where, 'index': i}`."""

  def __init__(self, source, fields: dict, label_paths: list, audio_rate: int, where: str):
    self.source, self.fields, self.label_paths = source, fields, label_paths
    self.audio_rate, self.where = audio_rate, where
    self.size = len(source)

  def __len__(self) -> int:
    return self.size

  def limit(self, n: int) -> TFDSRows:
    out = TFDSRows(self.source, self.fields, self.label_paths, self.audio_rate, self.where)
    out.size = min(int(n), self.size)
    return out

  def __getitem__(self, index: int) -> dict:
    if not 0 <= index < self.size:
      raise IndexError(index)
    record = self.source[int(index)]
    row = {"_row": f"{self.where} example {index}", "index": np.int32(index)}
    for m, path in self.fields.items():
      value = _walk(record, path)
      if m == "text":
        value = _text(value)
      elif m == "audio":
        value = decode.Waveform(np.asarray(value), self.audio_rate)
      row[m] = value
    for path in self.label_paths:
      row[path] = _label(_walk(record, path))
    return row


class TFDSDataset(files.FilesDataset):
  """A TFDS dataset through a field map (see the module docstring)."""

  def __init__(self, data_config):  # pylint: disable=super-init-not-called
    datasets.Dataset.__init__(self, data_config)
    self.name = data_config["name"]
    self.tfds_name = self.name.split(":", 1)[1]
    self.display_name = self.name
    self.root = ""
    if files.on_error_mode(data_config) == "skip":
      raise ValueError(
        "config.data.on_error='skip' reads every row at the start, which is for the "
        "'files' and 'webdataset' datasets; a TFDS dataset was checked when it was built"
      )
    self.skipped = None
    self.splits = dict(data_config.get("splits") or dict(train="train", test="test"))
    self._sources = {}
    info_source = self._tfds_source(self.splits.get("train") or next(iter(self.splits.values())))
    features = info_source.dataset_info.features
    self._check_fields(features)
    self.fields = {m: m for m in self.modalities} | {"split": "split"}
    self.labels = {}
    for key, entry in (data_config.get("labels") or {}).items():
      entry = {"column": entry} if isinstance(entry, str) else dict(entry)
      path = entry.setdefault("column", key)
      names = getattr(self._feature(features, path, f"labels.{key}"), "names", None)
      self.labels[key] = files.LabelColumn(key, entry, None, known_classes=names)
    self.audio_rate = 0
    if "audio" in self.modalities:
      self.audio_rate = int(getattr(_walk(features, self.tfds_fields["audio"]), "sample_rate", 0))
      self.audio_rate = int(data_config.get("tfds_audio_rate") or self.audio_rate)
      if not self.audio_rate:
        raise ValueError(
          f"{self.name}: feature {self.tfds_fields['audio']!r} names no sample_rate; "
          "set config.data.tfds_audio_rate"
        )
    self.tokenizer = self._tokenizer() if "text" in self.modalities else None

  def _tfds_source(self, tfds_split: str):
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    from cmjax.data import tfds_compat  # pylint: disable=g-import-not-at-top

    tfds_compat.allow_audio_without_tensorflow()
    data_dir = self.config.get("tfds_data_dir")
    if tfds_split not in self._sources:
      try:
        self._sources[tfds_split] = tfds.data_source(
          self.tfds_name, split=tfds_split, data_dir=data_dir, download=False, try_gcs=False
        )
      except Exception as e:  # tfds raises many kinds for a missing / unprepared dataset
        raise ValueError(
          f"cannot read TFDS dataset {self.tfds_name!r} split {tfds_split!r} from "
          f"{data_dir or '~/tensorflow_datasets'} (config.data.tfds_data_dir): "
          f"{type(e).__name__}: {str(e)[:300]}. Prepare it once with `tfds build` "
          "(see the README's 'TFDS datasets')"
        ) from None
    return self._sources[tfds_split]

  def _feature(self, features, path: str, key: str):
    try:
      return _walk(features, path)
    except KeyError:
      raise ValueError(
        f"config.data.{key}={path!r}: {self.name} has no such feature; its features "
        f"are {_feature_keys(features)}"
      ) from None

  def _check_fields(self, features) -> None:
    fields = dict(self.config.get("fields") or {})
    unknown = sorted(set(fields) - {"image", "text", "audio"})
    if unknown:
      raise ValueError(
        f"config.data.fields has {unknown}; a TFDS dataset maps image, text and audio"
      )
    if not fields:
      raise ValueError(
        f"config.data.fields is empty: map modalities to features of {self.name}, e.g. "
        f"dict(image='image', text='captions/text'); its features are {_feature_keys(features)}"
      )
    requested = self.config.get("modalities") or tuple(fields)
    requested = [requested] if isinstance(requested, str) else list(requested)
    missing = [m for m in requested if m not in fields]
    if missing:
      raise ValueError(f"config.data.modalities has {missing}, which config.data.fields lacks")
    for m in requested:
      self._feature(features, fields[m], f"fields.{m}")
    self.modalities = tuple(m for m in files.MODALITY_COLUMNS if m in requested)
    self.tfds_fields = {m: fields[m] for m in self.modalities}

  def _rows(self, split: str) -> TFDSRows:
    if split not in self.splits:
      raise ValueError(f"{self.name} has no split {split!r} in config.data.splits ({self.splits})")
    return TFDSRows(
      self._tfds_source(self.splits[split]),
      self.tfds_fields,
      [c.column for c in self.labels.values()],
      self.audio_rate,
      f"{self.name}[{self.splits[split]}]",
    )

  def _tokenizer(self):
    if self.config.get("tokenizer", "word") != "word":
      return super()._tokenizer()
    rows = self._rows("train")
    n = min(len(rows), int(self.config.get("vocab_rows", 10_000)))
    texts = []
    for i in tqdm.trange(n, desc=f"{self.name}: word vocabulary from {n} captions", leave=False):
      texts.extend(rows[i]["text"])
    return tokenizers.WordTokenizer(
      tokenizers.build_vocab(
        texts,
        int(self.config.get("vocab_size", 20000)) - tokenizers.NUM_SPECIALS,
        int(self.config.get("min_word_count", 1)),
      ),
      punctuation=True,
    )

  def source(self, split, *, seed, num_examples=None, **overrides):
    del seed  # the pipeline shuffles
    if overrides:
      raise ValueError(f"a TFDS dataset has no source options {sorted(overrides)}")
    rows = self._rows(split)
    if num_examples is None and split == "train":
      num_examples = self.config.get("num_train")
    return rows if num_examples is None else rows.limit(num_examples)
