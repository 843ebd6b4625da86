"""Reading TFDS datasets with audio features when TensorFlow is not installed.

tensorflow-datasets 4.9.10 builds the decoder of every `tfds.features.Audio`
with `tf.dtypes.as_dtype`, so even describing such a dataset (spoken_digit,
speech_commands, librispeech) imports TensorFlow, though reading its records
with `tfds.data_source` never uses it (tensorflow/datasets#11233). Without
TensorFlow, `allow_audio_without_tensorflow()` lets the decoder keep the NumPy
dtype instead; with TensorFlow installed it changes nothing.
"""

from __future__ import annotations

import importlib.util

_DONE = False


def allow_audio_without_tensorflow() -> None:
  """Idempotent; a no-op where TensorFlow is importable."""
  global _DONE
  if _DONE:
    return
  _DONE = True
  if importlib.util.find_spec("tensorflow") is not None:
    return
  from tensorflow_datasets.core.features import audio_feature  # pylint: disable=g-import-not-at-top

  decoder = getattr(audio_feature, "_AudioDecoder", None)
  if decoder is None:  # a TFDS release that no longer has the eager decoder
    return

  def __init__(self, file_format, np_dtype, shape):
    self._file_format = file_format
    self._np_dtype = np_dtype
    self._dtype = np_dtype  # only TensorFlow's decoding reads it
    self._shape = shape
    self._channels = shape[1] if len(shape) > 1 else 1

  decoder.__init__ = __init__
