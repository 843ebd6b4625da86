"""Records of the built-in datasets to batch rows: sources, tokenizing, padding, augmenting.

The built-in generated datasets (`shapes`, `av_digits`) and shapes prepared as
a TFDS dataset share one record layout: `image`, `captions` (lists of str),
`speech` (a waveform) and int32 labels. `Preprocess` turns such a record into
one row of a batch; `cmjax/data/datasets.py` declares what those rows hold.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Mapping

import grain
import numpy as np

from cmjax.data import cache, tokenizers


def generated_source(
  data_config: Mapping[str, Any],
  source_cls: type,
  split: str,
  seed: int,
  num_examples: int,
  options: dict,
):
  """`source_cls(split=, seed=, num_examples=, **options)`, generated once into a cache.

  With `config.data.cache` (the default) the split is generated once by all
  cores into the cache folder (`config.data.cache_dir`, else $CMJAX_CACHE_DIR,
  else ~/.cache/cmjax) and read from there; otherwise every read generates.
  """
  name = data_config.get("name", "shapes")
  kwargs = dict(options, split=split, seed=seed, num_examples=num_examples)
  factory = functools.partial(source_cls, **kwargs)
  if not data_config.get("cache", True):
    return factory()
  directory = os.path.join(
    data_config.get("cache_dir") or cache.default_cache_dir(), cache.cache_key(name, kwargs)
  )
  cache.materialize(
    factory,
    directory,
    description=f"{name}/{split}: generating {num_examples} examples once (cached)",
  )
  return cache.CachedSource(directory)


class DecodedSource:
  """A TFDS data source whose records look like the built-in source's.

  TFDS returns text as bytes (and lists of bytes); the pipeline expects str.
  """

  def __init__(self, source):
    self.source = source

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index: int) -> dict:
    return {k: _decode(v) for k, v in self.source[index].items()}


def _decode(value):
  if isinstance(value, bytes):
    return value.decode()
  if isinstance(value, (list, tuple)) and value and isinstance(value[0], bytes):
    return [v.decode() for v in value]
  if isinstance(value, np.ndarray) and value.dtype.kind in "OS":
    return [v.decode() if isinstance(v, bytes) else v for v in value.tolist()]
  return value


def tfds_source(name: str, split: str, data_dir: str | None) -> DecodedSource:
  """`tfds.data_source(name)[split]` (array_record, no TensorFlow), text decoded.

  Prepare the built-in data this way with
  `cmjax.data.shapes_tfds.prepare_shapes_tfds(data_dir, **options)` and set
  `config.data.name='tfds:shapes/<builder.builder_config.name>'` and
  `config.data.tfds_data_dir=data_dir`.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  sources = tfds.data_source(name, data_dir=data_dir)
  if split not in sources:
    raise ValueError(f"TFDS dataset {name!r} has no split {split!r}; it has {sorted(sources)}.")
  return DecodedSource(sources[split])


def make_tokenizer(data_config: Mapping[str, Any]):
  """`config.data.tokenizer` ('word', 'byte', 'hf:PATH', 'sentencepiece:PATH')
  with `config.data.tokenizer_options` (e.g. `dict(lowercase=True)`)."""
  return tokenizers.get_tokenizer(
    data_config.get("tokenizer", "word"), **dict(data_config.get("tokenizer_options") or {})
  )


def has_video(data_config: Mapping[str, Any]) -> bool:
  return bool(data_config.get("video_frames", 0))


TEXT_FIELDS = ("captions", "video_captions", "question", "pair_caption")


def text_field(data_config: Mapping[str, Any]) -> str:
  """Which text the `text` input holds: 'captions' (of the image),
  'video_captions' (of the video clip), 'question' (the VQA question) or
  'pair_caption' (the scene's first two objects named, for relation
  classification)."""
  field = data_config.get("text_field", "captions")
  if field not in TEXT_FIELDS:
    raise ValueError(f"config.data.text_field={field!r}; expected one of {TEXT_FIELDS}.")
  if field == "video_captions" and not has_video(data_config):
    raise ValueError(
      "config.data.text_field='video_captions' needs video clips: set config.data.video_frames > 0."
    )
  return field


def max_audio_samples(data_config: Mapping[str, Any]) -> int:
  return int(round(data_config["max_speech_seconds"] * data_config["sample_rate"]))


def pad_audio(wave: np.ndarray, max_samples: int) -> tuple[np.ndarray, np.ndarray]:
  """Crops / zero-pads a waveform `[n]` to `[max_samples]`; returns (audio, mask)."""
  n = min(len(wave), max_samples)
  audio = np.zeros((max_samples,), np.float32)
  audio[:n] = wave[:n]
  mask = np.zeros((max_samples,), bool)
  mask[:n] = True
  return audio, mask


def random_shift(image: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
  """Translates `[H, W, C]` by up to `max_shift` pixels each way (edges repeated).

  Augmentation for the image modality; 0 returns the image itself.
  """
  if not max_shift:
    return image
  dy, dx = rng.integers(-max_shift, max_shift + 1, size=2)
  h, w = image.shape[:2]
  padded = np.pad(image, ((max_shift, max_shift), (max_shift, max_shift), (0, 0)), mode="edge")
  return np.ascontiguousarray(
    padded[max_shift + dy : max_shift + dy + h, max_shift + dx : max_shift + dx + w]
  )


def texts(record, field: str) -> list[str]:
  """The record's texts in `field`: a list of paraphrases, or one string."""
  value = record[field]
  return [value] if isinstance(value, str) else list(value)


class Preprocess(grain.transforms.RandomMap):
  """Record of the source -> flat dict of fixed-shape numpy arrays.

  A random paraphrase of `record[text_field]` ('captions', or
  'video_captions' for the motion captions of the video clips) is chosen as the
  text for each visit of an example, so epochs differ while staying
  reproducible (grain seeds `rng` per element); with `spoken_text`, the
  caption the speech says (`record['speech_caption_index']`).
  """

  def __init__(
    self,
    tokenizer,
    max_text_len: int,
    max_samples: int,
    with_speech: bool,
    with_video: bool = False,
    text_field: str | None = "captions",
    label_keys: tuple[str, ...] = (),
    max_shift: int = 0,
    spoken_text: bool = False,
    negative_text: bool = False,
  ):
    self.tokenizer = tokenizer
    self.spoken_text = spoken_text
    self.max_text_len = max_text_len
    self.max_samples = max_samples
    self.with_speech = with_speech
    self.with_video = with_video
    self.text_field = text_field
    self.label_keys = label_keys
    self.max_shift = max_shift
    self.negative_text = negative_text

  def random_map(self, record, rng: np.random.Generator):
    out = {"image": random_shift(record["image"], self.max_shift, rng)}
    if self.text_field:
      captions = texts(record, self.text_field)
      if self.spoken_text and len(captions) == 1:  # the question, spoken
        caption = captions[0]
      elif self.spoken_text:  # the words the speech says (speech recognition targets)
        caption = captions[int(record["speech_caption_index"])]
      else:
        caption = captions[int(rng.integers(len(captions)))]
      out["text"], out["text_mask"] = self.tokenizer.pad(caption, self.max_text_len)
    if self.negative_text:  # a caption false of the scene (image-text matching)
      out["negative_text"], out["negative_text_mask"] = self.tokenizer.pad(
        record["negative_caption"], self.max_text_len
      )
    if self.with_speech:
      out["audio"], out["audio_mask"] = pad_audio(record["speech"], self.max_samples)
    if self.with_video:
      out["video"] = record["video"]
    for key in self.label_keys:
      out[key] = np.int32(record[key])
    return out
