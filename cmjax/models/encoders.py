"""Encoder registry and the contract every encoder keeps.

Every encoder is a Flax module looked up by (modality, name), e.g. the config

  model.image = dict(name='resnet', features=(32, 64, 128), norm='group')

builds `get_encoder_cls('image', 'resnet')(features=..., norm=...)`. Its
`__call__(*inputs, train=...)` takes the modality's batch arrays
(`MODALITY_INPUTS`) and returns an `EncoderOutput`:

  tokens  float `[batch, n, dim]`   one vector per patch / frame / word / step
  pooled  float `[batch, dim]`      one vector per example
  mask    bool  `[batch, n]`        True where a token is real (not padding)

so that any fusion or contrastive head can take any encoder.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

from cmjax.data.spec import MODALITIES
from cmjax.registry import Registry

# Batch keys an encoder of each modality takes, in call order.
MODALITY_INPUTS = {m.name: m.keys for m in MODALITIES.values()}

# Encoder used when a modality's config has no 'name'.
DEFAULT_ENCODER = {
  "image": "vit",
  "text": "transformer",
  "audio": "transformer",
  "video": "frames",
}


class EncoderOutput(NamedTuple):
  tokens: jax.Array  # [batch, n, dim]
  pooled: jax.Array  # [batch, dim]
  mask: jax.Array  # bool [batch, n]


def _import_builtin_encoders() -> None:
  # Importing each module runs its @register_encoder; lazy to avoid import cycles.
  # pylint: disable=g-import-not-at-top,unused-import
  from cmjax.models import (  # noqa: F401  # noqa: F401
    audio_ast,
    audio_cnn,
    audio_encoder,
    bert,
    resnet,
    text_encoder,
    text_rnn,
    video,
    vit,
  )


# One registry per modality: the same name ('transformer') means different
# modules for text and for audio.
ENCODERS = {
  m: Registry(
    f"{m} encoder", config_key=f"config.model.{m}.name", load_builtins=_import_builtin_encoders
  )
  for m in MODALITY_INPUTS
}


def _check_modality(modality: str) -> None:
  if modality not in ENCODERS:
    raise ValueError(f"unknown modality {modality!r}; known: {sorted(ENCODERS)}")


def register_encoder(modality: str, name: str):
  """Class decorator: makes the module class buildable as (modality, name)."""
  _check_modality(modality)
  return ENCODERS[modality].register(name)


def known_encoders(modality: str | None = None) -> dict[str, list[str]]:
  """{modality: [encoder names]}, for one modality or all."""
  modalities = sorted(ENCODERS) if modality is None else [modality]
  return {m: names for m in modalities if (names := ENCODERS[m].names())}


def get_encoder_cls(modality: str, name: str) -> type:
  _check_modality(modality)
  return ENCODERS[modality].get(name)


def build_encoder(modality: str, config: dict | None, **extra: Any):
  """Builds the encoder a model config entry describes.

  Args:
    modality: 'image', 'text', 'audio' or 'video'.
    config: keyword arguments of the encoder plus an optional 'name' (default
      `DEFAULT_ENCODER[modality]`).
    **extra: arguments the caller adds (dtype, module name).

  Raises ValueError naming the bad key when the config has an argument the
  encoder does not take.
  """
  kwargs = dict(config or {})
  name = kwargs.pop("name", DEFAULT_ENCODER.get(modality))
  cls = get_encoder_cls(modality, name)
  fields = set(getattr(cls, "__dataclass_fields__", {}))
  unknown = sorted(set(kwargs) - fields)
  if unknown:
    allowed = sorted(fields - {"parent", "name"})
    raise ValueError(
      f"config.model.{modality} has keys {unknown} that the {modality} "
      f"encoder {name!r} does not take; it takes {allowed}"
    )
  return cls(**kwargs, **extra)


def complete_from_data(modality: str, config: dict | None, data: Any) -> dict:
  """An encoder's config entry completed from the dataset's `ElementSpec` `data`.

  The data decide what the encoder must fit: a text encoder's `vocab_size` (the
  tokenizer's) and `max_len` (the batches' text length, where the encoder has a
  position table; a larger `max_len` the entry gives is kept, so that a
  pretrained position table loads), an audio encoder's `sample_rate`. Without
  `data` the entry is returned as it is.
  """
  entry = dict(config or {})
  if data is None:
    return entry
  name = entry.get("name", DEFAULT_ENCODER.get(modality))
  fields = getattr(get_encoder_cls(modality, name), "__dataclass_fields__", {})
  if modality == "text":
    entry["vocab_size"] = data.vocab_size
    if "max_len" in fields:
      entry["max_len"] = max(int(entry.get("max_len") or 0), data.text_length())
  if modality == "audio" and "sample_rate" in fields:
    entry["sample_rate"] = data.sample_rate
  return entry
