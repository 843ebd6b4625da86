"""Run as a script with 8 simulated CPU devices: restore a checkpoint onto other meshes.

  python tests/topology_check.py CHECKPOINT_DIR

Trains the tiny config on 8 devices (data=2, fsdp=4) for 2 steps, checkpoints
(state and data iterator), trains 2 more steps as the reference. Then, for
1, 2 and 4 devices and for another 8-device partitioning, restores that
checkpoint onto the new mesh and trains the same 2 steps. Prints one JSON
line {target: {"step", "losses", "reference", "param_axes"}};
tests/test_checkpoint_topology.py checks it.
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

from cmjax import checkpoint, sharding  # noqa: E402
from cmjax.data import pipeline  # noqa: E402
from tests import helpers  # noqa: E402
from tests.multidevice_step import split_axes  # noqa: E402

SAVED_ON = {"data": 2, "fsdp": 4}
TARGETS = {  # name: (mesh, number of devices)
  "1 device": ({}, 1),
  "2 devices, data parallel": ({"data": 2}, 2),
  "4 devices, fsdp": ({"fsdp": 4}, 4),
  "8 devices, data=4 model=2": ({"data": 4, "model": 2}, 8),
}


def setup(config, mesh_config, n):
  mesh = sharding.make_mesh(mesh_config, devices=jax.devices()[:n])
  _, abstract, init, step = helpers.build_step(config, mesh)
  return mesh, abstract, init, step


def train(state, step, data_iter, mesh, n):
  losses = []
  for _ in range(n):
    state, metrics = step(state, sharding.global_batch(next(data_iter), mesh))
    losses.append(float(metrics["loss"]))
  return state, losses


def main():
  assert len(jax.devices()) == 8, jax.devices()
  directory = sys.argv[1]
  config = helpers.load_config("shapes_contrastive.py", "tiny")
  config.data.speech = False  # image + text: five compilations, kept short

  mesh, _, init, step = setup(config, SAVED_ON, 8)
  data_iter = iter(pipeline.train_dataset(config))
  state, _ = train(init(), step, data_iter, mesh, 2)
  saver = checkpoint.Checkpointer(directory, every_steps=1, keep=1)
  saver.save(2, state, data_iter, force=True)
  saver.close()
  _, reference = train(state, step, data_iter, mesh, 2)

  out = {}
  for name, (mesh_config, n) in TARGETS.items():
    mesh, abstract, _, step = setup(config, mesh_config, n)
    data_iter = iter(pipeline.train_dataset(config))
    loader = checkpoint.Checkpointer(directory, every_steps=1, keep=1)
    state, at = loader.restore_latest(abstract, data_iter)
    loader.close()
    restored_axes = split_axes(state.params)
    _, losses = train(state, step, data_iter, mesh, 2)
    out[name] = {"step": at, "losses": losses, "reference": reference, "param_axes": restored_axes}
  print(json.dumps(out))


if __name__ == "__main__":
  main()
