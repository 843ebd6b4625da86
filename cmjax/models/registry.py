"""Model registry: `@register('name')` on a module class, `get_model(name, **kw)`."""

from typing import Any, Callable

_MODELS: dict[str, Callable[..., Any]] = {}


def register(name: str):
  """Class decorator adding a model constructor under `name`."""
  def wrap(cls):
    if name in _MODELS and _MODELS[name] is not cls:
      raise ValueError(f'model name {name!r} is already registered')
    _MODELS[name] = cls
    return cls
  return wrap


def _import_builtin_models() -> None:
  # Importing a model module runs its @register; done lazily to avoid cycles.
  from cmjax.models import classifier, contrastive  # noqa: F401


def known_models() -> list[str]:
  _import_builtin_models()
  return sorted(_MODELS)


def get_model(name: str, **kwargs) -> Any:
  """Builds the model registered as `name` with `kwargs` (e.g. config.model)."""
  _import_builtin_models()
  if name not in _MODELS:
    raise ValueError(f'unknown model {name!r}; known models: {sorted(_MODELS)}')
  return _MODELS[name](**kwargs)
