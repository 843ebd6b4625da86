r"""Per-device memory of the compiled train step: data parallel vs FSDP, 1-8 devices.

  python benchmarks/sharding_memory.py
  python benchmarks/sharding_memory.py --config_arg image=resnet_gn --devices 1,8

Compiles (never runs) the train step of `configs/shapes_contrastive.py` (the
default model, global batch 128) on 1, 2, 4 and 8 simulated CPU devices, with
the mesh all `data` (parameters and optimizer state replicated) or all `fsdp`
(both split over the devices), and prints XLA's memory analysis per device:
arguments (train state + batch), temporaries, and their sum. The same
compilation on GPUs or TPUs gives the same partitioning; byte counts of
temporaries depend on the backend.
"""

import math
import os
import sys

os.environ["XLA_FLAGS"] = (
  os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
)
os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
from absl import app, flags  # noqa: E402

from cmjax import config_utils, experiment, sharding  # noqa: E402

flags.DEFINE_string("config_arg", "", "Argument of configs/shapes_contrastive.py.")
flags.DEFINE_list("devices", ["1", "2", "4", "8"], "Device counts.")

MB = 2**20


def state_bytes(abstract) -> int:
  """Bytes of the train state one device holds (its shards)."""
  total = 0
  for leaf in jax.tree_util.tree_leaves(abstract):
    total += math.prod(leaf.sharding.shard_shape(leaf.shape)) * leaf.dtype.itemsize
  return total


def measure(config, n: int, axis: str) -> dict:
  mesh = sharding.make_mesh({axis: n}, devices=jax.devices()[:n])
  exp = experiment.build(config, mesh, total_steps=10, warmup_steps=1)
  abstract, shardings, _ = exp.init_state()
  step = exp.jit_step(shardings)
  spec = exp.batch_spec(local=False)
  batch = {
    k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=sharding.batch_sharding(mesh))
    for k, v in spec.items()
  }
  mem = step.lower(abstract, batch).compile().memory_analysis()
  return {
    "state": state_bytes(abstract) / MB,
    "arguments": mem.argument_size_in_bytes / MB,
    "temporaries": mem.temp_size_in_bytes / MB,
    "total": (mem.argument_size_in_bytes + mem.temp_size_in_bytes) / MB,
  }


def main(argv):
  del argv
  config = config_utils.load_config(
    os.path.join(
      os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
      "configs",
      "shapes_contrastive.py",
    ),
    flags.FLAGS.config_arg or None,
  )
  print(
    f"Train step of shapes_contrastive.py:{flags.FLAGS.config_arg}, global batch "
    f"{config.batch_size}; MiB per device (state = params + optimizer state)\n"
  )
  print("| devices | DP state | DP total | FSDP state | FSDP total | FSDP / DP total |")
  print("|---:|---:|---:|---:|---:|---:|")
  for n in (int(d) for d in flags.FLAGS.devices):
    dp, fsdp = measure(config, n, "data"), measure(config, n, "fsdp")
    print(
      f"| {n} | {dp['state']:.1f} | {dp['total']:.1f} | {fsdp['state']:.1f} | "
      f"{fsdp['total']:.1f} | {fsdp['total'] / dp['total']:.2f} |",
      flush=True,
    )


if __name__ == "__main__":
  app.run(main)
