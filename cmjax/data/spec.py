"""What a dataset's batches hold: the table of modalities and the element spec.

Every part that needs to know the layout of a batch reads it from here: the
trainer's batch checks and dummy batches, the models (vocabulary size, text
length, sample rate), the objectives (which keys they may ask for) and the
evaluators (which modalities there are to retrieve or classify).

A batch is a flat dict of arrays with a leading batch axis `B`:

  image   uint8   [B, H, W, 3]       text   int32 [B, L] + text_mask  bool [B, L]
  audio   float32 [B, T]             + audio_mask bool [B, T]
  video   uint8   [B, F, H, W, 3]
  <modality>_present  bool [B]       optional: False where it is missing
  labels and extras   [B, ...]       as the dataset declares them
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import jax
import numpy as np


@dataclasses.dataclass(frozen=True)
class Modality:
  """One modality: the batch keys that carry it, in the order encoders take them.

  The first key is the modality's data; the others are its masks.
  """

  name: str
  keys: tuple[str, ...]
  encode_method: str  # the models' method embedding this modality alone

  @property
  def present_key(self) -> str:
    return f"{self.name}_present"


MODALITIES: dict[str, Modality] = {
  m.name: m
  for m in (
    Modality("image", ("image",), "encode_image"),
    Modality("text", ("text", "text_mask"), "encode_text"),
    Modality("audio", ("audio", "audio_mask"), "encode_audio"),
    Modality("video", ("video",), "encode_video"),
  )
}


def modality(name: str) -> Modality:
  if name not in MODALITIES:
    raise ValueError(f"unknown modality {name!r}; known: {sorted(MODALITIES)}")
  return MODALITIES[name]


@dataclasses.dataclass(frozen=True)
class Feature:
  """One batch key of one example: its shape without the batch axis, its dtype."""

  shape: tuple[int, ...]
  dtype: str

  def batched(self, batch_size: int) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct((batch_size, *self.shape), np.dtype(self.dtype))


@dataclasses.dataclass(frozen=True)
class ElementSpec:
  """What one example of a dataset holds after preprocessing.

  Attributes:
    dataset: the dataset's name (for messages).
    modalities: the modalities every example carries, in a fixed order.
    features: every batch key -> `Feature` (modalities, masks, labels, extras).
    labels: class-label keys -> number of classes (int32 `[B]` in every batch).
    multilabels: multi-label keys -> number of classes (float32 `[B, classes]`,
      1 for each class the example has, else 0).
    regressions: regression target keys (float32 `[B]`).
    extras: other keys (questions, answers, domains, ...) -> description.
    vocab_size: the text tokenizer's vocabulary size (0 without text).
    sample_rate: audio samples per second (0 without audio).
  """

  dataset: str
  modalities: tuple[str, ...]
  features: Mapping[str, Feature]
  labels: Mapping[str, int] = dataclasses.field(default_factory=dict)
  extras: Mapping[str, str] = dataclasses.field(default_factory=dict)
  vocab_size: int = 0
  sample_rate: int = 0
  multilabels: Mapping[str, int] = dataclasses.field(default_factory=dict)
  regressions: tuple[str, ...] = ()

  def __post_init__(self):
    for m in self.modalities:
      missing = [k for k in modality(m).keys if k not in self.features]
      if missing:
        raise ValueError(
          f"dataset {self.dataset!r} declares modality {m!r} but not its batch keys {missing}"
        )
    targets = list(self.labels) + list(self.multilabels) + list(self.regressions)
    for key in targets + list(self.extras):
      if key not in self.features:
        raise ValueError(f"dataset {self.dataset!r} declares {key!r} without its shape")
    if len(set(targets)) != len(targets):
      raise ValueError(f"dataset {self.dataset!r} declares a target twice: {targets}")

  def task_kind(self, key: str) -> str:
    """'class', 'multilabel' or 'regression': what the target `key` is."""
    if key in self.labels:
      return "class"
    if key in self.multilabels:
      return "multilabel"
    if key in self.regressions:
      return "regression"
    raise ValueError(
      f"dataset {self.dataset!r} has no target {key!r}; it has {sorted(self.heads())}"
    )

  def heads(self) -> dict[str, int]:
    """Every target -> the outputs a model head needs (classes, or 1 for a regression)."""
    return {**self.labels, **self.multilabels, **{k: 1 for k in self.regressions}}

  def batch(self, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
    """Shapes and dtypes of a batch of `batch_size` examples."""
    return {k: f.batched(batch_size) for k, f in self.features.items()}

  def text_length(self) -> int:
    return self.features["text"].shape[0] if "text" in self.features else 0

  def summary(self) -> dict:
    """A JSON-able description (written with the run's config and signature)."""
    return {
      "dataset": self.dataset,
      "modalities": list(self.modalities),
      "features": {k: [list(f.shape), f.dtype] for k, f in self.features.items()},
      "labels": dict(self.labels),
      "vocab_size": self.vocab_size,
      "sample_rate": self.sample_rate,
      # Only where present, so that earlier runs' signatures stay as they were.
      **({"multilabels": dict(self.multilabels)} if self.multilabels else {}),
      **({"regressions": list(self.regressions)} if self.regressions else {}),
    }


def modality_features(
  name: str,
  *,
  image_size: int = 0,
  text_len: int = 0,
  audio_samples: int = 0,
  video_frames: int = 0,
  video_size: int = 0,
) -> dict[str, Feature]:
  """The features of one modality with the given sizes (see the module docstring)."""
  if name == "image":
    return {"image": Feature((image_size, image_size, 3), "uint8")}
  if name == "text":
    return {"text": Feature((text_len,), "int32"), "text_mask": Feature((text_len,), "bool")}
  if name == "audio":
    return {
      "audio": Feature((audio_samples,), "float32"),
      "audio_mask": Feature((audio_samples,), "bool"),
    }
  if name == "video":
    return {"video": Feature((video_frames, video_size, video_size, 3), "uint8")}
  raise ValueError(f"unknown modality {name!r}; known: {sorted(MODALITIES)}")


def check_batch(batch: Mapping, spec: Mapping[str, jax.ShapeDtypeStruct], where: str = "") -> None:
  """Raises ValueError naming the key when a batch differs from `spec` (`ElementSpec.batch`)."""
  where = f" ({where})" if where else ""
  missing = [k for k in spec if k not in batch]
  if missing:
    raise ValueError(f"Batch{where} is missing key(s) {missing}; it has {sorted(batch)}.")
  for key, want in spec.items():
    got = batch[key]
    if tuple(got.shape) != tuple(want.shape):
      raise ValueError(
        f"Batch key {key!r}{where} has shape {tuple(got.shape)}, expected {tuple(want.shape)}."
      )
    if np.dtype(got.dtype) != np.dtype(want.dtype):
      raise ValueError(f"Batch key {key!r}{where} has dtype {got.dtype}, expected {want.dtype}.")
