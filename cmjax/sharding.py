"""Mesh construction, logical-axis partition rules, and host <-> global batches.

Parameters carry logical axis names (`nn.with_logical_partitioning`); the config's
`sharding_rules` map those names to mesh axes, so the same model runs replicated
on one device, data parallel on many, or FSDP / tensor parallel on a pod, by
changing only the config.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

MESH_AXES = ("data", "fsdp", "model")
BATCH_AXES = ("data", "fsdp")


def make_mesh(mesh_config: Mapping[str, int], devices=None) -> Mesh:
  """Builds a Mesh with axes (data, fsdp, model); one size may be -1 (= the rest)."""
  devices = list(jax.devices() if devices is None else devices)
  unknown = set(mesh_config) - set(MESH_AXES)
  if unknown:
    raise ValueError(f"config.mesh has unknown axes {sorted(unknown)}; known axes: {MESH_AXES}.")
  sizes = [int(mesh_config.get(a, 1)) for a in MESH_AXES]
  if sizes.count(-1) > 1:
    raise ValueError(f"config.mesh: at most one axis may be -1, got {dict(mesh_config)}.")
  known = int(np.prod([s for s in sizes if s != -1]))
  if -1 in sizes:
    if len(devices) % known:
      raise ValueError(
        f"config.mesh {dict(mesh_config)} does not divide the {len(devices)} available devices."
      )
    sizes[sizes.index(-1)] = len(devices) // known
  if int(np.prod(sizes)) != len(devices):
    raise ValueError(
      f"config.mesh {dict(zip(MESH_AXES, sizes))} needs "
      f"{int(np.prod(sizes))} devices, {len(devices)} available."
    )
  return Mesh(np.asarray(devices).reshape(sizes), MESH_AXES)


def logical_rules(rules: Sequence[Sequence[Any]]) -> tuple:
  """Normalises the config's `[[logical, mesh_axes], ...]` into flax's rule tuples."""
  out = []
  for rule in rules:
    name, target = rule
    if isinstance(target, (list, tuple)):
      target = tuple(target)
    out.append((name, target))
  return tuple(out)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over the data-like mesh axes, the rest replicated."""
  return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def num_batch_shards(mesh: Mesh) -> int:
  return int(np.prod([mesh.shape[a] for a in BATCH_AXES]))


def tree_shardings(abstract_boxed_tree: Any, mesh: Mesh, rules: tuple) -> Any:
  """Shardings for a (possibly `nn.Partitioned`-boxed) abstract tree, unboxed."""

  def sharding_of(x):
    if not is_box(x):
      return NamedSharding(mesh, P())
    if not jax.tree_util.tree_leaves(x.value):
      # A frozen group's optimizer moments: optax's empty `MaskedNode` inside the
      # parameter's box. It stays an empty node, as the state will hold it.
      return x.value
    return nn.logical_to_mesh_sharding(x.get_partition_spec(), mesh, rules)

  is_box = lambda x: isinstance(x, nn.meta.AxisMetadata)
  return jax.tree_util.tree_map(sharding_of, abstract_boxed_tree, is_leaf=is_box)


def unbox(tree: Any) -> Any:
  """The values of a tree whose leaves may be boxed (`nn.Partitioned`), without
  sharding constraints: the shardings are given to `jax.jit` explicitly, and
  flax's `nn.meta.unbox` under `jax.set_mesh` would constrain abstract values."""

  def value(x):
    if isinstance(x, nn.Partitioned):
      return x.unbox(apply_constraint=False)
    return x.unbox() if isinstance(x, nn.meta.AxisMetadata) else x

  return jax.tree_util.tree_map(value, tree, is_leaf=lambda x: isinstance(x, nn.meta.AxisMetadata))


def global_batch(local_batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict:
  """Assembles per-host numpy arrays into global jax.Arrays sharded over batch.

  Each process passes only its own rows; the global batch is
  `process_count * local_rows`.
  """
  sharding = batch_sharding(mesh)
  n = jax.process_count()
  out = {}
  for key, value in local_batch.items():
    value = np.asarray(value)
    shape = (value.shape[0] * n,) + value.shape[1:]
    out[key] = jax.make_array_from_process_local_data(sharding, value, shape)
  return out
