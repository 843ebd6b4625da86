"""Run as a script with 8 simulated CPU devices: the sharded contrastive losses.

  python tests/sharded_losses_check.py

Prints one JSON line that tests/test_sharded_losses.py checks:
  parity   {case: [max |loss diff|, max |grad diff| / max |grad|]} of the sharded
           losses (2x4 mesh, batch over both axes) against losses.clip_loss /
           siglip_loss of the same global batch, with and without `valid`;
  memory   {loss: {per-device batch: temp bytes}} of the compiled loss+grad on
           8 devices, sharded vs plain (XLA partitioning the plain loss itself).
"""

import json
import os
import sys

os.environ["XLA_FLAGS"] = (
  os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
)
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

# Avoids a rendezvous deadlock of simulated devices on 2 cores (see DESIGN.md).
jax.config.update("jax_cpu_enable_async_dispatch", False)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

from cmjax import losses, sharded_losses  # noqa: E402

AXES = ("data", "fsdp")


def embeddings(rng, n, d):
  v = rng.normal(size=(n, d)).astype(np.float32)
  return v / np.linalg.norm(v, axis=1, keepdims=True)


def sharded_fn(kind, mesh, chunk, with_valid):
  """(x, y, scale, bias, valid) -> scalar loss of global arrays, via shard_map."""
  row, rep = P(AXES), P()

  def local(x, y, scale, bias, valid):
    v = valid if with_valid else None
    if kind == "clip":
      return sharded_losses.clip_loss_sharded(x, y, scale, v, axis_name=AXES, chunk=chunk)
    return sharded_losses.siglip_loss_sharded(x, y, scale, bias, v, axis_name=AXES, chunk=chunk)

  return jax.shard_map(local, mesh=mesh, in_specs=(row, row, rep, rep, row), out_specs=rep)


def plain_fn(kind, with_valid):
  def loss(x, y, scale, bias, valid):
    v = valid if with_valid else None
    if kind == "clip":
      return losses.clip_loss(x, y, scale, v)
    return losses.siglip_loss(x, y, scale, bias, v)

  return loss


def parity(mesh):
  rng = np.random.default_rng(0)
  out = {}
  for kind in ("clip", "siglip"):
    for with_valid in (False, True):
      n, d = 64, 16
      args = (
        embeddings(rng, n, d),
        embeddings(rng, n, d),
        np.float32(np.log(10.0)),
        np.float32(-3.0),
        rng.random(n) > 0.3,
      )
      # chunk 5 does not divide the 8 local rows: exercises the padding too.
      sharded = sharded_fn(kind, mesh, chunk=5, with_valid=with_valid)
      plain = plain_fn(kind, with_valid)
      grad_args = (0, 1, 2, 3)
      l1, g1 = jax.jit(jax.value_and_grad(plain, grad_args))(*args)
      l8, g8 = jax.jit(jax.value_and_grad(sharded, grad_args))(*args)
      scale = max(float(jnp.max(jnp.abs(g))) for g in g1)
      grad_diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(g1, g8)) / scale
      out[f"{kind}{'_valid' if with_valid else ''}"] = [abs(float(l1) - float(l8)), grad_diff]
  return out


def temp_bytes(fn, mesh, b, d=64):
  """Per-device temporary memory of the compiled value-and-grad at per-device batch b."""
  n = 8 * b
  row, rep = NamedSharding(mesh, P(AXES)), NamedSharding(mesh, P())
  shapes = (
    jax.ShapeDtypeStruct((n, d), jnp.float32, sharding=row),
    jax.ShapeDtypeStruct((n, d), jnp.float32, sharding=row),
    jax.ShapeDtypeStruct((), jnp.float32, sharding=rep),
    jax.ShapeDtypeStruct((), jnp.float32, sharding=rep),
    jax.ShapeDtypeStruct((n,), jnp.bool_, sharding=row),
  )
  compiled = jax.jit(jax.value_and_grad(fn, (0, 1))).lower(*shapes).compile()
  return int(compiled.memory_analysis().temp_size_in_bytes)


def memory(mesh):
  out = {}
  for kind in ("clip", "siglip"):
    out[f"{kind}_sharded"] = {
      b: temp_bytes(sharded_fn(kind, mesh, 128, False), mesh, b) for b in (128, 512)
    }
    out[f"{kind}_plain"] = {b: temp_bytes(plain_fn(kind, False), mesh, b) for b in (128, 512)}
  return out


def main():
  assert len(jax.devices()) == 8, jax.devices()
  mesh = Mesh(np.asarray(jax.devices()).reshape(2, 4), AXES)
  print(json.dumps({"parity": parity(mesh), "memory": memory(mesh)}))


if __name__ == "__main__":
  main()
