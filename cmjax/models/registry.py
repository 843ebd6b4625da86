"""Model registry: `@register('name')` on a module class, `get_model(name, **kw)`."""

from typing import Any

from cmjax.registry import Registry


def _import_builtin_models() -> None:
  # Importing a model module runs its @register; done lazily to avoid cycles.
  from cmjax.models import (  # noqa: F401
    autoencoder,
    captioner,
    classifier,
    contrastive,
    matcher,
    recognizer,
  )


MODELS = Registry("model", config_key="config.model.name", load_builtins=_import_builtin_models)
register = MODELS.register


def known_models() -> list[str]:
  return MODELS.names()


def get_model(name: str, **kwargs) -> Any:
  """Builds the model registered as `name` with `kwargs` (e.g. config.model)."""
  return MODELS.get(name)(**kwargs)


DEFAULT_MODALITIES = ("image", "text", "audio")


def input_modalities(model) -> tuple[str, ...]:
  """The modalities a model consumes: its `modalities` setting, else every
  modality of its `data` spec, else image, text and audio."""
  explicit = getattr(model, "modalities", None)
  if explicit:
    return tuple(explicit)
  data = getattr(model, "data", None)
  return tuple(data.modalities) if data is not None else DEFAULT_MODALITIES
