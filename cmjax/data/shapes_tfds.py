"""The ``shapes`` dataset as a TFDS builder (array_record files).

``prepare_shapes_tfds(data_dir, **options)`` writes the dataset once; then
``tfds.data_source('shapes', data_dir=data_dir)`` (or
``builder.as_data_source()``) returns random-access sources whose records
have the same fields and values as ``ShapesSource`` (see ``shapes.py``),
except that text comes back as bytes (``captions`` as a list of bytes,
``question`` etc. as bytes; decode with ``.decode()``) and int32 scalars as
python ints -- TFDS's representation. Builds need no TensorFlow: the image
is stored as a raw uint8 tensor, not a PNG-encoded ``tfds.features.Image``.

The options used to build are stored in the builder config, so a dataset
built with e.g. ``num_examples=16`` gets its own config name and never mixes
with a default-sized one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from cmjax.data import shapes

_SCALARS = (
  "answer_label",
  "question_type",
  "label",
  "shape_label",
  "color_label",
  "size_label",
  "num_objects",
  "relation_label",
  "domain",
  "index",
  "speech_caption_index",
  "voice",
  "speech_rate",
)
_STRINGS = ("negative_caption", "question", "answer", "pair_caption")


@dataclasses.dataclass
class ShapesConfig(tfds.core.BuilderConfig):
  """Builder config holding ``ShapesSource`` options as a JSON string."""

  options_json: str = "{}"


def _config(options: dict) -> ShapesConfig:
  text = json.dumps(options, sort_keys=True)
  # Name from the options so different builds live in different folders.
  name = "o" + hashlib.sha1(text.encode()).hexdigest()[:10] if options else "default"
  return ShapesConfig(name=name, options_json=text, description=f"ShapesSource options {text}")


class Shapes(tfds.core.GeneratorBasedBuilder):
  """Procedural tri-modal shapes scenes (image, captions, speech, labels)."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.1.0": "question types (question_type), swap_captions, pair_caption."}
  # TFDS derives this from the module via `importlib_resources`, a package
  # this venv lacks; it is only used to look for checksums/metadata files
  # next to the code, which a generated dataset does not have.
  code_path = epath.Path(__file__)
  BUILDER_CONFIGS = [_config({})]

  def _options(self) -> dict:
    return json.loads(self.builder_config.options_json)

  def _info(self) -> tfds.core.DatasetInfo:
    opts = self._options()
    size = opts.get("image_size", 64)
    k = opts.get("max_objects", shapes.MAX_OBJECTS)
    feats = {
      # Raw uint8 tensor, not tfds Image: PNG encoding would need TF.
      "image": tfds.features.Tensor(shape=(size, size, 3), dtype=np.uint8),
      "captions": tfds.features.Sequence(tfds.features.Text()),
      "swap_captions": tfds.features.Sequence(tfds.features.Text()),
      "speech": tfds.features.Tensor(shape=(None,), dtype=np.float32),
      "objects": tfds.features.Tensor(shape=(k, 5), dtype=np.int32),
    }
    feats.update({n: tfds.features.Tensor(shape=(), dtype=np.int32) for n in _SCALARS})
    feats.update({n: tfds.features.Text() for n in _STRINGS})
    return self.dataset_info_from_configs(
      features=tfds.features.FeaturesDict(feats),
      homepage="https://example.invalid/cmjax",
      # Keep file order = example index, so record i is ShapesSource[i].
      disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    return {split: self._generate_examples(split) for split in shapes.SPLITS}

  def _generate_examples(self, split):
    src = shapes.ShapesSource(split=split, **self._options())
    for i in range(len(src)):
      ex = src[i]
      yield (
        i,
        {
          k: ex[k]
          for k in ("image", "captions", "swap_captions", "speech", "objects", *_SCALARS, *_STRINGS)
        },
      )


def builder(data_dir: str, **source_options) -> Shapes:
  """The builder for these options (``split`` is not an option: all are built)."""
  if "split" in source_options:
    raise ValueError("split: prepare_shapes_tfds builds every split; do not pass split")
  shapes.ShapesSource(split="train", **source_options)  # validate options early
  return Shapes(data_dir=data_dir, config=_config(source_options), file_format="array_record")


def prepare_shapes_tfds(data_dir: str, **source_options) -> Shapes:
  """Build (if needed) the array_record dataset and return its builder.

  Serve it with ``builder.as_data_source()[split]`` or
  ``tfds.data_source('shapes/<builder.builder_config.name>', data_dir=data_dir)``.
  """
  b = builder(data_dir, **source_options)
  b.download_and_prepare()
  return b
