"""The `files` dataset: your own images, captions, audio and labels from a manifest.

  config.data.name = "files"
  config.data.manifest = "/data/pets/manifest.jsonl"   # or .csv / .tsv

One manifest row per example; file paths are relative to the manifest's folder
(or absolute):

  {"image": "img/0001.jpg", "text": ["a cat", "a grey cat on a sofa"],
   "audio": "wav/0001.wav", "label": "cat", "split": "train"}

Columns (renamed with `config.data.fields`, e.g. `fields=dict(text="caption")`):
  image   an image file of any size (JPEG, PNG, WebP, ...; any colour mode)
  text    a caption, or a list of captions (one is drawn per visit in training)
  audio   WAV, FLAC, OGG or MP3 at any rate: mixed to mono, resampled
  video   a folder of frame images, or a `.npy` uint8 array `[frames, H, W, 3]`
  split   'train', 'test', ... (without the column, `holdout_fraction` of the
          rows, a fixed choice, form 'test')
and the label columns that `config.data.labels` names.

The modalities are `config.data.modalities`, else every modality column that
the manifest has. A row may leave a modality empty (missing key, "" or
null): its `<modality>_present` is then False and the arrays are zeros, which
the models, fusion methods and objectives honour.
"""

from __future__ import annotations

import logging
import math
import os

import grain
import numpy as np
import tqdm

from cmjax.data import datasets, decode, image_ops, manifest, records, tokenizers
from cmjax.data import spec as spec_lib
from cmjax.data.decode import DataError

MODALITY_COLUMNS = ("image", "text", "audio", "video")
DEFAULT_FIELDS = {m: m for m in MODALITY_COLUMNS} | {"split": "split"}
DEFAULT_AUGMENT = dict(crop_scale=(0.9, 1.0), flip=False, color_jitter=0.0)


def _empty(value) -> bool:
  return value is None or (isinstance(value, (str, list)) and len(value) == 0)


class RowSource:
  """Random access over a split's manifest rows (each with its `index`)."""

  def __init__(self, rows: list[dict]):
    self.rows = rows

  def __len__(self) -> int:
    return len(self.rows)

  def __getitem__(self, index: int) -> dict:
    row = self.rows[index]
    return dict(row.items(), index=np.int32(index))


LABEL_TYPES = ("class", "multilabel", "regression")


class LabelColumn:
  """A target read from a column, by `type`:

  class       a class name (or integer id) -> int32 index
  multilabel  a list of class names (or one) -> float32 multi-hot `[classes]`
  regression  a number -> float32
  """

  def __init__(self, key: str, entry, rows: list[dict] | None, known_classes=None):
    """`rows` to find the classes in (and check that the column is used), or
    None with `known_classes` (e.g. a TFDS ClassLabel's names)."""
    entry = {"column": entry} if isinstance(entry, str) else dict(entry)
    unknown = set(entry) - {"column", "type", "classes"}
    if unknown:
      raise ValueError(
        f"config.data.labels.{key} has unknown keys {sorted(unknown)}; it takes column, type, classes"
      )
    self.key, self.column = key, entry.get("column", key)
    self.type = entry.get("type", "class")
    if self.type not in LABEL_TYPES:
      raise ValueError(
        f"config.data.labels.{key}.type={self.type!r}; expected one of {LABEL_TYPES}"
      )
    values = []
    if rows is not None:
      values = [r.get(self.column) for r in rows if not _empty(r.get(self.column))]
      if not values:
        raise ValueError(f"config.data.labels.{key}: no row has column {self.column!r}")
    if self.type == "regression":
      self.classes = []
    elif entry.get("classes") is None and known_classes is not None:
      self.classes = [str(c) for c in known_classes]
    else:
      self.classes = _classes(entry.get("classes"), values)
    self._index = {c: i for i, c in enumerate(self.classes)}

  def _class(self, value) -> int:
    """A class name, else an integer taken as the class's index."""
    if str(value) in self._index:
      return self._index[str(value)]
    index = _as_int(value)
    if index is not None and 0 <= index < len(self.classes):
      return index
    raise DataError(
      f"label {value!r} in column {self.column!r} is not one of the "
      f"{len(self.classes)} classes (e.g. {self.classes[:5]})"
    )

  def __call__(self, row: dict):
    value = row.get(self.column)
    if _empty(value) and self.type != "multilabel":
      raise DataError(f"column {self.column!r} (label {self.key!r}) is empty")
    if self.type == "class":
      return np.int32(self._class(value))
    if self.type == "multilabel":
      hot = np.zeros((len(self.classes),), np.float32)
      for v in _as_list(value):
        hot[self._class(v)] = 1.0
      return hot
    try:
      return np.float32(float(value))
    except (TypeError, ValueError):
      raise DataError(
        f"column {self.column!r} (label {self.key!r}): {value!r} is not a number"
      ) from None


def on_error_mode(data_config) -> str:
  mode = data_config.get("on_error", "raise")
  if mode not in ("raise", "skip"):
    raise ValueError(f"config.data.on_error={mode!r}; expected 'raise' or 'skip'")
  return mode


def _as_list(value) -> list:
  if _empty(value):
    return []
  return list(value) if isinstance(value, list) else [value]


def _classes(classes, values) -> list[str]:
  """The class names: given (a list, or a file with one per line), else those found
  (0..max for integer ids, else sorted names). Multi-label values are lists."""
  if isinstance(classes, str):
    with open(classes, encoding="utf-8") as f:
      return [line.strip() for line in f if line.strip()]
  if classes is not None:
    return [str(c) for c in classes]
  flat = [v for value in values for v in _as_list(value)]
  if flat and all(_as_int(v) is not None for v in flat):
    return [str(i) for i in range(max(_as_int(v) for v in flat) + 1)]
  return sorted({str(v) for v in flat})


def _as_int(value):
  if isinstance(value, (bool, np.bool_)):
    return None
  if isinstance(value, (int, np.integer)):
    return int(value)
  if isinstance(value, str) and value.strip().isdigit():
    return int(value)
  return None


def _captions(value) -> list[str]:
  if isinstance(value, str):
    return [value]
  if isinstance(value, list) and all(isinstance(c, str) for c in value):
    return value
  raise DataError(f"text must be a string or a list of strings, got {value!r:.80}")


def _split_rows(rows: list[dict], column: str, holdout: float) -> dict[str, list[dict]]:
  """Rows per split: the `column`'s values, else a fixed holdout as 'test'."""
  if any(column in r for r in rows):
    splits: dict[str, list[dict]] = {}
    for r in rows:
      if _empty(r.get(column)):
        raise DataError(f"{r['_row']}: column {column!r} is empty (other rows have it)")
      splits.setdefault(str(r[column]), []).append(r)
    return splits
  if not 0 <= holdout < 1:
    raise ValueError(f"config.data.holdout_fraction={holdout}; expected a number in [0, 1)")
  test = set(np.random.default_rng(0).permutation(len(rows))[: int(round(holdout * len(rows)))])
  return {
    "train": [r for i, r in enumerate(rows) if i not in test],
    "test": [r for i, r in enumerate(rows) if i in test],
  }


@datasets.register("files")
class FilesDataset(datasets.Dataset):
  """Examples listed in a JSONL / CSV manifest (see the module docstring)."""

  def __init__(self, data_config):
    super().__init__(data_config)
    path = data_config.get("manifest")
    if not path:
      raise ValueError(
        "config.data.manifest is required for config.data.name='files': a JSONL or CSV "
        "file with one row per example (python -m cmjax.data.export_example writes one)"
      )
    self.name = "files"
    self.path = os.path.abspath(os.path.expanduser(path))
    self.root = os.path.dirname(self.path)
    self.display_name = f"files:{os.path.basename(self.path)}"
    self.skipped = [] if on_error_mode(data_config) == "skip" else None
    self._init_from_rows(data_config, manifest.read(self.path, self.skipped))

  def _init_from_rows(self, data_config, rows: list) -> None:
    """Fields, modalities, splits, labels and tokenizer from the rows (dicts,
    or mappings that read their values lazily)."""
    unknown = sorted(set(data_config.get("fields") or {}) - set(DEFAULT_FIELDS))
    if unknown:
      raise ValueError(
        f"config.data.fields has {unknown}; expected keys among {sorted(DEFAULT_FIELDS)}"
      )
    self.fields = DEFAULT_FIELDS | dict(data_config.get("fields") or {})
    self.modalities = self._modalities(rows, data_config.get("modalities"))
    self.splits = _split_rows(
      rows, self.fields["split"], float(data_config.get("holdout_fraction", 0.1))
    )
    self.labels = {k: LabelColumn(k, e, rows) for k, e in (data_config.get("labels") or {}).items()}
    self.tokenizer = self._tokenizer() if "text" in self.modalities else None
    if self.skipped is not None:
      self._drop_bad_rows()

  def _drop_bad_rows(self) -> None:
    """With `on_error='skip'`: decodes every row once, leaves out those that fail,
    and logs how many and which (also in `report()`, hence metrics.json)."""
    total = sum(len(rows) for rows in self.splits.values())
    with tqdm.tqdm(
      total=total, desc=f"{self.display_name}: checking every row", leave=False
    ) as bar:
      for split, rows in self.splits.items():
        pre, good = self.checked_preprocess(train=False, split=split), []
        for i, row in enumerate(rows):
          try:
            pre.random_map((i, row), np.random.default_rng(0))
            good.append(row)
          except DataError as e:
            self.skipped.append(str(e))
          bar.update()
        self.splits[split] = good
    if self.skipped:
      logging.warning(
        "%s: skipped %d bad rows (config.data.on_error='skip'); the first: %s",
        self.display_name,
        len(self.skipped),
        "; ".join(self.skipped[:5]),
      )

  def report(self) -> dict:
    """For metrics.json: the rows left out as bad under `on_error='skip'`."""
    if self.skipped is None:
      return {}
    return {"data/skipped_rows": len(self.skipped), "data/skipped_first": self.skipped[:5]}

  def _modalities(self, rows, requested) -> tuple[str, ...]:
    columns = set().union(*(r.keys() for r in rows))
    if requested:
      requested = [requested] if isinstance(requested, str) else list(requested)
      for m in requested:
        spec_lib.modality(m)  # raises on an unknown name
        if self.fields[m] not in columns:
          raise ValueError(
            f"config.data.modalities has {m!r} but the manifest has no column "
            f"{self.fields[m]!r}; its columns are {sorted(columns - {'_row'})} "
            f"(rename with config.data.fields.{m})"
          )
      return tuple(m for m in MODALITY_COLUMNS if m in requested)
    found = tuple(m for m in MODALITY_COLUMNS if self.fields[m] in columns)
    if not found:
      raise ValueError(
        f"{self.display_name} has none of the columns {[self.fields[m] for m in MODALITY_COLUMNS]}"
        f"; its columns are {sorted(columns - {'_row'})} (map them with config.data.fields)"
      )
    return found

  def _tokenizer(self):
    data = self.config
    name = data.get("tokenizer", "word")
    if name != "word":  # 'byte', 'hf:PATH', 'sentencepiece:PATH'
      return records.make_tokenizer(data)
    texts = []
    for r in self.splits.get("train", []):
      value = r.get(self.fields["text"])
      if not _empty(value):
        texts.extend(_captions(value))
    vocab = tokenizers.build_vocab(
      texts,
      int(data.get("vocab_size", 20000)) - tokenizers.NUM_SPECIALS,
      int(data.get("min_word_count", 1)),
    )
    return tokenizers.WordTokenizer(vocab, punctuation=True)

  @property
  def spec(self) -> spec_lib.ElementSpec:
    data = self.config
    sizes = dict(
      image_size=int(data.get("image_size", 64)),
      text_len=int(data.get("max_text_len", 32)),
      audio_samples=self.audio_samples,
      video_frames=int(data.get("video_frames", 8)),
      video_size=int(data.get("video_size", 32)),
    )
    features = {}
    for m in self.modalities:
      features.update(spec_lib.modality_features(m, **sizes))
      features[spec_lib.modality(m).present_key] = spec_lib.Feature((), "bool")
    kinds = {t: {k: c for k, c in self.labels.items() if c.type == t} for t in LABEL_TYPES}
    for key in kinds["class"]:
      features[key] = spec_lib.Feature((), "int32")
    for key, column in kinds["multilabel"].items():
      features[key] = spec_lib.Feature((len(column.classes),), "float32")
    for key in kinds["regression"]:
      features[key] = spec_lib.Feature((), "float32")
    return spec_lib.ElementSpec(
      dataset=self.display_name,
      modalities=self.modalities,
      features=features,
      labels={k: len(c.classes) for k, c in kinds["class"].items()},
      multilabels={k: len(c.classes) for k, c in kinds["multilabel"].items()},
      regressions=tuple(kinds["regression"]),
      vocab_size=self.tokenizer.vocab_size if self.tokenizer else 0,
      sample_rate=int(data.get("sample_rate", 16000)) if "audio" in self.modalities else 0,
    )

  @property
  def audio_samples(self) -> int:
    if "audio" not in self.modalities:
      return 0
    data = self.config
    return int(
      round(float(data.get("max_audio_seconds", 5.0)) * int(data.get("sample_rate", 16000)))
    )

  def class_names(self, key: str) -> list[str]:
    return list(self.labels[key].classes)

  def source(self, split, *, seed, num_examples=None, **overrides):
    del seed  # the manifest's order; the pipeline shuffles
    if overrides:
      raise ValueError(f"dataset 'files' has no source options {sorted(overrides)}")
    if split not in self.splits:
      raise ValueError(
        f"{self.display_name} has no {split!r} rows; its splits are {sorted(self.splits)}"
      )
    rows = self.splits[split]
    if num_examples is None and split == "train":
      num_examples = self.config.get("num_train")  # None: every row
    return RowSource(rows if num_examples is None else rows[: int(num_examples)])

  def captions(self, record) -> list[str]:
    """Every caption of a record (retrieval scores all of them)."""
    value = record.get(self.fields["text"])
    return [] if _empty(value) else _captions(value)

  def preprocess(self, train=True):
    data = self.config
    augment = data.get("augment", DEFAULT_AUGMENT) if train else None
    return FilesPreprocess(
      root=self.root,
      fields=self.fields,
      modalities=self.modalities,
      spec=self.spec,
      tokenizer=self.tokenizer,
      labels=self.labels,
      augment=dict(DEFAULT_AUGMENT, **augment) if augment else None,
      train=train,
    )


def data_config(source: str = "files", tfds_name: str = "") -> dict:
  """`config.data` of the configs over your own data, every key with its default:
  `source` 'files' (a manifest), 'webdataset' (tar shards) or 'tfds' (a prepared
  TFDS dataset; a known `tfds_name` such as 'cifar10' fills in its layout)."""
  layout = {}
  if source == "tfds":
    from cmjax.data import tfds_data  # pylint: disable=g-import-not-at-top

    layout = tfds_data.layout(tfds_name) if tfds_name else {}
    data = dict(
      name=f"tfds:{layout.pop('version', tfds_name) or 'NAME'}",
      tfds_data_dir=None,  # None: $TFDS_DATA_DIR, else ~/tensorflow_datasets
      fields=dict(),  # modality -> feature path, e.g. dict(image="image", text="captions/text")
      splits=dict(train="train", test="test"),  # cmjax split -> TFDS split (slices allowed)
      vocab_rows=10_000,  # training examples read for the word vocabulary
      tfds_audio_rate=None,  # only if the audio feature names no sample_rate
    )
  elif source == "files":
    data = dict(
      name="files",
      manifest="",  # required: --config.data.manifest=PATH (.jsonl or .csv)
      fields=dict(image="image", text="text", audio="audio", video="video", split="split"),
      holdout_fraction=0.1,  # held out as 'test' when the manifest has no split column
    )
  elif source == "webdataset":
    data = dict(
      name="webdataset",
      shards="",  # required: --config.data.shards='DIR/{00000..00127}.tar'
      eval_shards="",  # the held-out 'test' split's shards
      fields=dict(image="jpg;jpeg;png;webp", text="txt", audio="wav;flac;ogg;mp3"),
      stream=False,  # True: read the training shards in order (remote storage), not indexed
      shuffle_buffer=1000,  # with stream: samples shuffled together
      peek_rows=2000,  # with stream: first samples read for modalities, classes, vocabulary
    )
  else:
    raise ValueError(f"config argument source={source!r}; expected 'files', 'webdataset' or 'tfds'")
  defaults = dict(
    data,
    modalities=(),  # () = every modality the data has
    num_train=None,  # None = every 'train' row
    image_size=64,  # resize the shorter side, then crop (random-resized in training)
    augment=dict(DEFAULT_AUGMENT),
    tokenizer="word",  # vocabulary of the training captions; "byte", "hf:PATH/tokenizer.json"
    tokenizer_options={},  # e.g. dict(lowercase=True); SentencePiece: add_bos, add_eos
    vocab_size=20_000,
    min_word_count=1,
    max_text_len=32,
    sample_rate=16_000,  # audio is resampled to this rate
    max_audio_seconds=5.0,  # cropped (randomly in training) or zero-padded
    video_frames=8,
    video_size=32,
    labels={},  # {key: dict(column=..., type='class'|'multilabel'|'regression', classes=...)}
    on_error="raise",  # or "skip": check every row at start, leave out (and report) bad ones
    num_workers=0,  # grain worker processes (0: a prefetch thread)
  )
  return defaults | layout


class FilesPreprocess(grain.transforms.RandomMap):
  """A manifest row -> one batch row (decoded, resized, tokenized, padded)."""

  def __init__(self, *, root, fields, modalities, spec, tokenizer, labels, augment, train):
    self.root, self.fields, self.modalities = root, fields, modalities
    self.features = spec.features
    self.sample_rate = spec.sample_rate
    self.tokenizer, self.labels = tokenizer, labels
    self.augment, self.train = augment, train

  def _path(self, value):
    """A path relative to the manifest's folder; a file's bytes, a decoded image
    array or a `decode.Waveform` as they are."""
    if isinstance(value, (bytes, np.ndarray, decode.Waveform)):
      return value
    if not isinstance(value, str):
      raise DataError(f"expected a file path, got {value!r:.80}")
    return os.path.join(self.root, os.path.expanduser(value))

  def random_map(self, record, rng: np.random.Generator):
    try:
      return self._row(record, rng)
    except DataError as e:
      raise DataError(f"{record.get('_row', '?')}: {e}") from None

  def _row(self, record, rng):
    out = {}
    for m in self.modalities:
      value = record.get(self.fields[m])
      present = not _empty(value)
      out[f"{m}_present"] = np.bool_(present)
      if not present:
        out.update({k: np.zeros(f.shape, f.dtype) for k, f in self._features_of(m)})
        continue
      out.update(getattr(self, f"_{m}")(value, rng))
    for key, column in self.labels.items():
      out[key] = column(record)
    return out

  def _features_of(self, m):
    return [(k, self.features[k]) for k in spec_lib.modality(m).keys]

  def _image(self, value, rng):
    size = self.features["image"].shape[0]
    if self.augment:
      view = train_image(self._path(value), size, rng, self.augment)
    else:
      view = image_ops.resize_shorter_center_crop(
        decode.image(self._path(value), min_side=size), size
      )
    return {"image": view}

  def _text(self, value, rng):
    caps = _captions(value)
    caption = caps[int(rng.integers(len(caps)))] if self.train else caps[0]
    ids, mask = self.tokenizer.pad(caption, self.features["text"].shape[0])
    return {"text": ids, "text_mask": mask}

  def _audio(self, value, rng):
    wave = decode.audio(self._path(value), self.sample_rate)
    n = self.features["audio"].shape[0]
    if self.train and len(wave) > n:
      start = int(rng.integers(len(wave) - n + 1))
      wave = wave[start : start + n]
    audio, mask = records.pad_audio(wave, n)
    return {"audio": audio, "audio_mask": mask}

  def _video(self, value, rng):
    del rng
    frames, size = self.features["video"].shape[:2]
    path = self._path(value)
    if isinstance(path, bytes):
      raise DataError("video from bytes is not supported; give a folder of frames or a .npy file")
    if os.path.isdir(path):
      names = sorted(n for n in os.listdir(path) if not n.startswith("."))
      if not names:
        raise DataError(f"video folder {path!r} has no frames")
      pick = np.linspace(0, len(names) - 1, frames).round().astype(int)
      clip = [decode.image(os.path.join(path, names[i]), min_side=size) for i in pick]
    elif path.endswith(".npy"):
      try:
        arr = np.load(path)
      except (OSError, ValueError) as e:
        raise DataError(f"cannot read video {path!r}: {e}") from None
      if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8 or not len(arr):
        raise DataError(
          f"video {path!r}: expected uint8 [frames, H, W, 3], got {arr.dtype} {arr.shape}"
        )
      clip = list(arr[np.linspace(0, len(arr) - 1, frames).round().astype(int)])
    else:
      raise DataError(f"video {path!r}: expected a folder of frames or a .npy array")
    video = np.stack([image_ops.resize_shorter_center_crop(f, size) for f in clip])
    return {"video": video}


def train_image(file, size: int, rng: np.random.Generator, augment: dict) -> np.ndarray:
  """The training view (`image_ops.train_view`) of an image file, decoded at the
  smallest JPEG scale that still gives its random crop `size` pixels: the crop
  is drawn from the image's size before any pixel is decoded."""
  drawn = {}

  def min_side(h: int, w: int) -> int:
    drawn["box"] = image_ops.random_crop_box(h, w, rng, tuple(augment["crop_scale"]))
    drawn["size"] = (h, w)
    left, top, right, bottom = drawn["box"]
    return math.ceil(min(h, w) * size / min(right - left, bottom - top))

  img = decode.image(file, min_side=min_side)
  if not drawn:  # an array, decoded already
    min_side(*img.shape[:2])
  (h, w), (left, top, right, bottom) = drawn["size"], drawn["box"]
  fy, fx = img.shape[0] / h, img.shape[1] / w
  return image_ops.train_view(
    img,
    size,
    rng,
    box=(left * fx, top * fy, right * fx, bottom * fy),
    flip=augment["flip"],
    jitter=augment["color_jitter"],
  )
