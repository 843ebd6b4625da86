"""One kind of thing looked up by name from the config: models, encoders, fusions, evaluators.

  FUSIONS = Registry('fusion', config_key='config.model.fusion.name',
                     load_builtins=lambda: importlib.import_module('...'))

  @FUSIONS.register('concat')
  class ConcatFusion(nn.Module): ...

  FUSIONS.get('concat')  # -> ConcatFusion
  FUSIONS.get('sum')     # ValueError: unknown fusion 'sum' (config.model.fusion.name);
                         #             known: ['concat', ...]

The built-in entries register themselves when their module is imported;
`load_builtins` imports those modules the first time a name is looked up, which
keeps the registry module free of import cycles. A researcher's own class
registers the same way, from any module imported before the run starts.
"""

from typing import Callable, Optional


class Registry:
  """Names -> classes, filled by the `register(name)` class decorator."""

  def __init__(
    self,
    kind: str,
    config_key: Optional[str] = None,
    load_builtins: Optional[Callable[[], None]] = None,
  ):
    self.kind = kind
    self.config_key = config_key
    self._load_builtins = load_builtins
    self._entries: dict[str, type] = {}

  def register(self, name: str):
    """Class decorator adding `cls` under `name` (twice with another class is an error)."""

    def wrap(cls):
      if name in self._entries and self._entries[name] is not cls:
        raise ValueError(
          f"{self.kind} {name!r} is already registered (by {self._entries[name].__qualname__})"
        )
      self._entries[name] = cls
      return cls

    return wrap

  def names(self) -> list[str]:
    if self._load_builtins is not None:
      self._load_builtins()
    return sorted(self._entries)

  def __contains__(self, name: str) -> bool:
    return name in self.names()

  def get(self, name: str, config_key: Optional[str] = None) -> type:
    """The class registered as `name`; an unknown name raises naming the config key."""
    known = self.names()
    if name not in self._entries:
      where = config_key or self.config_key
      where = f" ({where})" if where else ""
      raise ValueError(f"unknown {self.kind} {name!r}{where}; known: {known}")
    return self._entries[name]
