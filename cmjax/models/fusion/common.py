"""What every fusion method shares: the registry, the call contract, masking helpers.

A fusion module is built with the model's `modalities` (their order fixes the
parameter layout) and called as

  fused = fusion(features, present, train=...)

  features  {modality: EncoderOutput(tokens [B, n_m, d_m], pooled [B, d_m],
             mask bool [B, n_m])}, one per modality of `modalities`
  present   {modality: bool [B]} or None (all present): False where an
            example lacks that modality. A missing modality never influences
            that example's output (tested for every method).

It returns the fused representation `[B, width]`; decision-level methods
(`outputs_logits = True`) return class logits `[B, num_classes]` instead.
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp

from cmjax.models.encoders import EncoderOutput
from cmjax.registry import Registry

Features = Mapping[str, EncoderOutput]


def _import_builtin_fusions() -> None:
  # pylint: disable=g-import-not-at-top,unused-import
  from cmjax.models.fusion import pooled, relational, tokens  # noqa: F401


FUSIONS = Registry(
  "fusion", config_key="config.model.fusion.name", load_builtins=_import_builtin_fusions
)
register_fusion = FUSIONS.register  # class decorator: buildable as config.model.fusion.name


def known_fusions() -> list[str]:
  return FUSIONS.names()


def get_fusion_cls(name: str) -> type:
  return FUSIONS.get(name)


def presence(
  features: Features, present: Mapping[str, jax.Array] | None, modality: str
) -> jax.Array:
  """bool `[B]`: which examples have `modality` (all True when not given)."""
  batch = features[modality].pooled.shape[0]
  if present is None or modality not in present:
    return jnp.ones((batch,), jnp.bool_)
  return jnp.asarray(present[modality]).astype(jnp.bool_)


def check_features(modalities, features: Features, minimum: int = 1) -> None:
  """Raises unless `features` has every modality and there are >= `minimum` of them.

  One modality is allowed (a unimodal baseline through the same head) except
  for methods that combine pairs.
  """
  missing = [m for m in modalities if m not in features]
  if missing:
    raise ValueError(
      f"fusion over {list(modalities)} got no features for {missing}; got {sorted(features)}"
    )
  if len(modalities) < minimum:
    raise ValueError(
      f"this fusion needs at least {minimum} modalities, got "
      f"{list(modalities)} (config.model.modalities)"
    )


def zero_missing(x: jax.Array, present: jax.Array) -> jax.Array:
  """Rows of `x` `[B, ...]` where `present` `[B]` is False set to zero."""
  return jnp.where(present.reshape((-1,) + (1,) * (x.ndim - 1)), x, jnp.zeros_like(x))


def masked_softmax(logits: jax.Array, valid: jax.Array, axis: int) -> jax.Array:
  """Softmax over `axis` restricted to `valid` entries; all-invalid -> zeros."""
  logits = jnp.where(valid, logits, -jnp.inf)
  m = jnp.max(logits, axis=axis, keepdims=True)
  e = jnp.where(valid, jnp.exp(logits - jnp.where(jnp.isfinite(m), m, 0.0)), 0.0)
  return e / jnp.maximum(jnp.sum(e, axis=axis, keepdims=True), 1e-30)
