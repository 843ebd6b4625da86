"""The `webdataset` dataset: tar shards as img2dataset and webdataset write them.

  config.data.name = "webdataset"
  config.data.shards = "/data/cc/{00000..00127}.tar"      # training shards
  config.data.eval_shards = "/data/cc/{00128..00129}.tar"  # held out ('test')

A shard holds samples as consecutive members sharing a key: `KEY.jpg` (or
png / webp), `KEY.txt` (the caption), `KEY.json` (metadata: labels, or a list
of captions) and optionally `KEY.wav` (or flac / ogg / mp3). Which members
make each modality is `config.data.fields`:

  fields = dict(image="jpg;jpeg;png;webp", text="txt", audio="wav;flac;ogg;mp3")

(`text="json:captions"` reads a list of captions from the json). Labels are
json keys named in `config.data.labels`, as columns are for `files`.

By default each shard's member headers are read once at start (an index of
offsets; the data itself is read when an example is), so examples have random
access:
the training stream is the same shuffled, checkpointed grain pipeline as for
every other dataset (exact resume, each process reading only its rows), and
the same examples give the same run as a manifest of them. Paths may be any
`etils.epath` path (local, gs://, ...). Everything else (decoding,
preprocessing, missing modalities, errors naming the shard and key) is the
`files` dataset's.

With `config.data.stream=True` the training shards are instead read front to
back, split over processes and grain workers and shuffled in windows of
`config.data.shuffle_buffer` samples, the position saved with each checkpoint
(`cmjax/data/webdataset_stream.py`): nothing is read at start but the first
`config.data.peek_rows` samples, which suits many shards on remote storage.
The held-out shards are always indexed.
"""

from __future__ import annotations

import json
import os
import re
import tarfile
from collections.abc import Mapping

from cmjax.data import datasets, files
from cmjax.data.decode import DataError

DEFAULT_FIELDS = dict(image="jpg;jpeg;png;webp", text="txt", audio="wav;flac;ogg;mp3")
_BRACE = re.compile(r"\{([^{}]*)\}")


def expand(pattern) -> list[str]:
  """Shard paths from a brace pattern (`a/{000..012}.tar`, `{x,y}.tar`) or a list of them."""
  if isinstance(pattern, (list, tuple)):
    return [p for item in pattern for p in expand(item)]
  m = _BRACE.search(pattern)
  if not m:
    return [pattern]
  head, tail, body = pattern[: m.start()], pattern[m.end() :], m.group(1)
  rng = re.fullmatch(r"(\d+)\.\.(\d+)", body)
  if rng:
    lo, hi = rng.groups()
    if int(hi) < int(lo):
      raise ValueError(f"shard pattern {pattern!r}: range {{{body}}} is empty")
    width = len(lo) if lo.startswith("0") else 0
    choices = [str(i).zfill(width) for i in range(int(lo), int(hi) + 1)]
  else:
    choices = body.split(",")
  return [p for c in choices for p in expand(head + c + tail)]


def _open(path: str):
  from etils import epath  # pylint: disable=g-import-not-at-top

  return epath.Path(path).open("rb")


def index_shard(path: str, skipped: list | None = None) -> list[tuple[str, dict]]:
  """[(key, {extension: (data offset, size)})] of the samples in a tar, in order.

  An unreadable shard raises `DataError`; with a `skipped` list, the samples
  before the damage are kept and the rest described there instead.
  """
  samples: dict[str, dict[str, tuple[int, int]]] = {}
  try:
    _scan(path, samples)
  except DataError as e:
    if skipped is None:
      raise
    skipped.append(f"{e} (kept the {max(len(samples) - 1, 0)} samples before it)")
    if samples:
      samples.popitem()  # the last one may be incomplete
  return list(samples.items())


def split_member(member: tarfile.TarInfo) -> tuple[str, str] | None:
  """(sample key, extension) of a tar member, None for what is not a sample's file
  (folders, hidden files, names without an extension)."""
  if not member.isfile():
    return None
  folder, base = os.path.split(member.name)
  if base.startswith(".") or "." not in base:
    return None
  stem, ext = base.split(".", 1)
  return os.path.join(folder, stem), ext.lower()


def _scan(path: str, samples: dict) -> None:
  try:
    with _open(path) as f, tarfile.open(fileobj=f, mode="r:") as tar:
      for member in tar:
        parts = split_member(member)
        if parts is not None:
          samples.setdefault(parts[0], {})[parts[1]] = (member.offset_data, member.size)
  except FileNotFoundError:
    raise DataError(f"shard {path!r} does not exist") from None
  except (tarfile.TarError, EOFError, OSError) as e:
    raise DataError(f"shard {path!r} is not a readable tar (truncated?): {e}") from None


class ShardReader:
  """Reads members' bytes by offset, one open file per shard and process."""

  def __init__(self):
    self._files = {}

  def __getstate__(self):  # open files stay in their process
    return {"_files": {}}

  def read(self, path: str, offset: int, size: int) -> bytes:
    f = self._files.get(path)
    if f is None:
      f = self._files[path] = _open(path)
    f.seek(offset)
    data = f.read(size)
    if len(data) != size:
      raise DataError(f"shard {path!r} ends inside a member (truncated?)")
    return data


class MemberBytes:
  """A streamed sample's members, read like `ShardReader` reads a shard:
  `members` then map each extension to `(extension, size)`."""

  def __init__(self, data: dict[str, bytes]):
    self.data = data

  def read(self, path: str, ext: str, size: int) -> bytes:
    del path, size
    return self.data[ext]

  @property
  def members(self) -> dict[str, tuple[str, int]]:
    return {ext: (ext, len(b)) for ext, b in self.data.items()}


class TarSample(Mapping):
  """One sample as a manifest-like row whose values are read when asked for:
  `image` / `audio` (bytes), `text`, `split`, `_row` and the json's label keys."""

  def __init__(self, reader, shard, key, members, fields, split, label_columns):
    self._reader, self._shard, self._key = reader, shard, key
    self._members, self._fields, self._split = members, fields, split
    self._keys = ["_row", "split"]
    self._keys += [m for m in fields if self._member(m) or self._from_json(m)]
    self._keys += [c for c in label_columns if "json" in members]

  def _member(self, field):
    for ext in self._fields[field].split(";"):
      if ext in self._members:
        return ext
    return None

  def _from_json(self, field):
    return self._fields[field].startswith("json:") and "json" in self._members

  def _bytes(self, ext: str) -> bytes:
    return self._reader.read(self._shard, *self._members[ext])

  def _json(self) -> dict:
    try:
      return json.loads(self._bytes("json").decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
      raise DataError(f"{self._row()}: {self._key}.json is not UTF-8 JSON ({e})") from None

  def _row(self) -> str:
    return f"{os.path.basename(self._shard)}:{self._key}"

  def __getitem__(self, name):
    if name == "_row":
      return self._row()
    if name == "split":
      return self._split
    if name in self._fields:
      if self._from_json(name):
        return self._json().get(self._fields[name][len("json:") :])
      ext = self._member(name)
      if ext is None:
        raise KeyError(name)
      data = self._bytes(ext)
      if name != "text":
        return data
      try:
        return data.decode("utf-8")
      except UnicodeDecodeError as e:
        raise DataError(
          f"{self._row()}: {self._key}.{ext} is not UTF-8 text ({e.reason})"
        ) from None
    if "json" not in self._members:
      raise KeyError(name)
    return self._json()[name]

  def __iter__(self):
    return iter(self._keys)

  def __len__(self):
    return len(self._keys)


@datasets.register("webdataset")
class WebDataset(files.FilesDataset):
  """Samples of webdataset tar shards (see the module docstring)."""

  def __init__(self, data_config):  # pylint: disable=super-init-not-called
    datasets.Dataset.__init__(self, data_config)
    if not data_config.get("shards"):
      raise ValueError(
        "config.data.shards is required for config.data.name='webdataset': the training "
        "shards, e.g. '/data/{00000..00127}.tar'"
      )
    unknown = sorted(set(data_config.get("fields") or {}) - set(DEFAULT_FIELDS))
    if unknown:
      raise ValueError(
        f"config.data.fields has {unknown}; expected keys among {sorted(DEFAULT_FIELDS)}"
      )
    self.name = "webdataset"
    self.root = ""
    self.display_name = f"webdataset:{data_config['shards']}"
    fields = DEFAULT_FIELDS | dict(data_config.get("fields") or {})
    labels = [
      e if isinstance(e, str) else e.get("column", k)
      for k, e in (data_config.get("labels") or {}).items()
    ]
    self.skipped = [] if files.on_error_mode(data_config) == "skip" else None
    self.stream = bool(data_config.get("stream", False))
    self._fields_and_labels = fields, labels
    reader = ShardReader()
    rows = []
    for split, key in (("train", "shards"), ("test", "eval_shards")):
      shards = expand(data_config.get(key) or [])
      if split == "train" and self.stream:
        # Not indexed: the first rows tell the modalities, classes and words.
        self.train_shards = shards
        rows.extend(self._peek(shards, int(data_config.get("peek_rows", 2000))))
        continue
      for shard in shards:
        for sample_key, members in index_shard(shard, self.skipped):
          rows.append(TarSample(reader, shard, sample_key, members, fields, split, labels))
    # The row mappings expose canonical names: `image`, `text`, ... and `split`.
    identity = dict(files.DEFAULT_FIELDS)
    self._init_from_rows(dict(data_config, fields=identity), rows)

  def _streamed_row(self, shard: str, key: str, members: dict, split: str = "train"):
    fields, labels = self._fields_and_labels
    data = MemberBytes(members)
    return TarSample(data, shard, key, data.members, fields, split, labels)

  def _peek(self, shards: list[str], n: int) -> list:
    from cmjax.data import webdataset_stream  # pylint: disable=g-import-not-at-top

    rows = []
    for shard in shards:
      for key, members in webdataset_stream.stream_samples(shard):
        if len(rows) >= n:
          return rows
        rows.append(self._streamed_row(shard, key, members))
    return rows

  def source(self, split, *, seed, num_examples=None, **overrides):
    if split == "train" and self.stream:
      return StreamedSplit(self.config.get("num_train"), self.display_name)
    return super().source(split, seed=seed, num_examples=num_examples, **overrides)

  def train_stream(self, config, *, process_index: int, process_count: int):
    """With `config.data.stream`: the shards streamed (`cmjax/data/webdataset_stream.py`)."""
    if not self.stream:
      return None
    from cmjax.data import webdataset_stream  # pylint: disable=g-import-not-at-top

    if config.data.get("resample"):
      raise ValueError("config.data.resample needs random access; not with config.data.stream")
    return webdataset_stream.ShardStream(
      self.train_shards,
      self._streamed_row,
      self.checked_preprocess(train=True, split="train"),
      seed=config.seed,
      window=int(config.data.get("shuffle_buffer", 1000)),
      process_index=process_index,
      process_count=process_count,
      skip=self.skipped is not None,
    )


class StreamedSplit:
  """The streamed training split: its size (`config.data.num_train`), no random access."""

  def __init__(self, size, name: str):
    self.size, self.name = size, name

  def __len__(self) -> int:
    if not self.size:
      raise ValueError(
        f"{self.name} is streamed (config.data.stream), so its size is not known: set "
        "config.data.num_train (examples per pass) to count training in passes, or set "
        "config.total_steps"
      )
    return int(self.size)

  def __getitem__(self, index):
    raise TypeError(f"{self.name} is streamed (config.data.stream): no random access")
