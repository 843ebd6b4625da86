"""Contrastive objectives between modality embeddings: 'clip' (softmax) and 'siglip' (sigmoid).

  c.objectives = dict(contrastive=dict(type="clip", sharded=False))

Options of the entry:
  modalities  which embeddings to pair (default: every modality embedding the
              model outputs); the loss is summed over all pairs.
  sharded     compute the loss from per-device blocks in `jax.shard_map`
              (`cmjax/sharded_losses.py`), so that no device holds the `[B, B]`
              logits of the global batch.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from cmjax import losses, sharding
from cmjax.data import spec as spec_lib
from cmjax.objectives import base


class _Contrastive(base.Objective):
  kind = "clip"

  def __init__(self, entry, ctx, where=""):
    super().__init__(entry, ctx, where)
    base.check_keys(self.where, entry, ("modalities", "sharded"))
    self.modalities = tuple(entry.get("modalities") or spec_lib.MODALITIES)
    self.sharded = bool(entry.get("sharded", False))
    self.mesh = ctx.mesh
    self.needs_outputs = ("logit_scale",)

  def check(self, output_keys, batch_keys) -> None:
    super().check(output_keys, batch_keys)
    present = [m for m in self.modalities if m in set(output_keys)]
    if len(present) < 2:
      raise ValueError(
        f"{self.where} (type {self.kind!r}) needs the embeddings of at least "
        f"two modalities among {list(self.modalities)}; the model outputs "
        f"{sorted(output_keys)}."
      )

  def __call__(self, outputs, batch, step):
    del batch, step
    if self.sharded and self.mesh is not None:
      return self._sharded(outputs)
    return losses.multimodal_contrastive_loss(outputs, kind=self.kind, modalities=self.modalities)

  def _sharded(self, outputs):
    """The loss in `jax.shard_map`: each device takes its own batch rows."""
    rows = P(sharding.BATCH_AXES)
    specs = {k: P() if jnp.ndim(v) == 0 else rows for k, v in outputs.items()}
    local = functools.partial(
      losses.multimodal_contrastive_loss,
      kind=self.kind,
      modalities=self.modalities,
      axis_name=sharding.BATCH_AXES,
    )
    return jax.shard_map(local, mesh=self.mesh, in_specs=(specs,), out_specs=P())(outputs)


@base.register("clip")
class CLIPObjective(_Contrastive):
  """Symmetric softmax InfoNCE over every pair of modalities (CLIP)."""

  kind = "clip"


@base.register("siglip")
class SigLIPObjective(_Contrastive):
  """Pairwise sigmoid loss over every pair of modalities (SigLIP)."""

  kind = "siglip"
