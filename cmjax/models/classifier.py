"""Supervised multimodal classifier: encoders -> fusion -> one linear head per task.

    batch ──> encoder per modality ──> EncoderOutput (tokens, pooled, mask)
          ──> presence flags (batch '<m>_present', training-time modality dropout)
          ──> fusion (by name; see cmjax/models/fusion) ──> [B, width]
          ──> head per task ──> {'logits/<task>': [B, classes]}

Decision-level fusion ('late') produces logits itself, one fusion per task.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cmjax.models.contrastive import validate_batch
from cmjax.models.encoders import MODALITY_INPUTS, build_encoder
from cmjax.models.fusion import get_fusion_cls
from cmjax.models.registry import register

Dtype = Any


def modality_dropout(rng: jax.Array, present: jax.Array, rate: float) -> jax.Array:
  """Drops each present modality of each example with probability `rate`.

  present: bool `[B, M]`. An example never loses all its modalities: if every
  one would be dropped, one present modality chosen at random is kept.
  Returns bool `[B, M]`.
  """
  drop_rng, keep_rng = jax.random.split(rng)
  keep = present & ~jax.random.bernoulli(drop_rng, rate, present.shape)
  # Random scores, -inf on absent modalities: argmax picks a present one.
  scores = jnp.where(present, jax.random.uniform(keep_rng, present.shape), -jnp.inf)
  rescue = jax.nn.one_hot(jnp.argmax(scores, axis=1), present.shape[1], dtype=jnp.bool_)
  return jnp.where(jnp.any(keep, axis=1, keepdims=True), keep, rescue & present)


@register('fusion_classifier')
class FusionClassifier(nn.Module):
  """Encoders + fusion + per-task linear heads.

  Attributes:
    modalities: the modalities used, in a fixed order.
    image, text, audio, video: encoder configs ('name' + kwargs), as in the
      contrastive model.
    fusion: fusion config: 'name' (default 'concat') + the method's kwargs
      (width, depth, ...).
    heads: {task: number of classes}; the logits of task t are 'logits/t'.
    modality_dropout: training-time probability of dropping each modality
      of each example (never all of them).
    dtype: compute dtype.
  """
  modalities: tuple[str, ...] = ('image', 'text', 'audio')
  image: dict | None = None
  text: dict | None = None
  audio: dict | None = None
  video: dict | None = None
  fusion: dict | None = None
  heads: dict | None = None
  modality_dropout: float = 0.0
  dtype: Dtype = jnp.float32

  def setup(self):
    unknown = set(self.modalities) - set(MODALITY_INPUTS)
    if unknown:
      raise ValueError(f'unknown modalities {sorted(unknown)}; known: {sorted(MODALITY_INPUTS)}')
    if not self.heads:
      raise ValueError('config.model.heads is empty; give {task: num_classes}')
    self.encoders = {m: build_encoder(m, getattr(self, m), dtype=self.dtype,
                                      name=f'{m}_encoder') for m in self.modalities}
    kw = dict(self.fusion or {})
    cls = get_fusion_cls(kw.pop('name', 'concat'))
    kw.update(modalities=tuple(self.modalities), dtype=self.dtype)
    if cls.outputs_logits:
      self.fusions = {t: cls(**kw, num_classes=n, name=f'fusion_{t}')
                      for t, n in self.heads.items()}
      self.head_layers = {}
    else:
      self.fusions = {'shared': cls(**kw, name='fusion')}
      self.head_layers = {t: nn.Dense(n, dtype=self.dtype, name=f'head_{t}')
                          for t, n in self.heads.items()}

  def presence(self, batch: dict, train: bool) -> dict[str, jax.Array]:
    """{modality: bool `[B]`}: the batch's flags, then modality dropout when training."""
    batch_size = batch[MODALITY_INPUTS[self.modalities[0]][0]].shape[0]
    flags = jnp.stack([jnp.asarray(batch.get(f'{m}_present', jnp.ones((batch_size,), bool))
                                   ).astype(jnp.bool_) for m in self.modalities], axis=1)
    if train and self.modality_dropout > 0:
      flags = modality_dropout(self.make_rng('dropout'), flags, self.modality_dropout)
    return {m: flags[:, i] for i, m in enumerate(self.modalities)}

  def __call__(self, batch: dict, *, train: bool = False) -> dict:
    """Returns {'logits/<task>': float32 `[B, classes]`, 'present/<m>': bool `[B]`}."""
    missing = [m for m in self.modalities if MODALITY_INPUTS[m][0] not in batch]
    if missing:
      raise KeyError(f'batch lacks {missing}; this classifier uses {list(self.modalities)}; '
                     'mark a missing modality with "<modality>_present" = False instead')
    validate_batch(batch, tuple(self.modalities))
    present = self.presence(batch, train)
    features = {m: self.encoders[m](*[batch[k] for k in MODALITY_INPUTS[m]], train=train)
                for m in self.modalities}
    out = {f'present/{m}': p for m, p in present.items()}
    if self.head_layers:
      fused = self.fusions['shared'](features, present, train=train)
      for t, head in self.head_layers.items():
        out[f'logits/{t}'] = head(fused).astype(jnp.float32)
    else:
      for t, fusion in self.fusions.items():
        out[f'logits/{t}'] = fusion(features, present, train=train).astype(jnp.float32)
    return out
