"""Run as a script with 8 simulated CPU devices: two train steps on 1 vs 8 devices.

  python tests/multidevice_step.py [CONFIG_ARG [OPTIMIZER [MESH ...]]]
      CONFIG_ARG  of shapes_contrastive.py (default tiny)
      OPTIMIZER   adamw (default) or sgd
      MESH        8-device meshes to compare with 1 device, e.g. data=8 (the
                  default), data=2,fsdp=4 or data=4,model=2; a "+sharded_loss"
                  suffix runs that mesh with the sharded contrastive loss (the
                  1-device reference keeps the plain one)

Prints a JSON line {mesh: result} with the largest differences and the mesh
axes that the parameters and optimizer state are split over;
tests/test_multidevice.py checks it.
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

import numpy as np  # noqa: E402

from cmjax import config_utils, sharding  # noqa: E402
from cmjax.data import pipeline  # noqa: E402
from tests import helpers  # noqa: E402


def one_step(config, devices, batch, mesh_config):
  mesh = sharding.make_mesh(mesh_config, devices=devices)
  exp, _, init, step = helpers.build_step(config, mesh)
  batch = sharding.global_batch(batch, mesh)
  state, first = step(init(), batch)
  state, second = step(state, batch)  # its loss depends on the first update
  term, _ = exp.objective.terms["contrastive"]
  return (
    [float(first["loss"]), float(second["loss"])],
    float(first["grad_norm"]),
    jax.device_get(state.params),
    jax.device_get(state.model_state),
    split_axes(state.params),
    split_axes(state.opt_state),
    "sharded" if term.sharded and term.mesh is not None else "plain",
  )


def split_axes(tree) -> list[str]:
  """Mesh axes that at least one array of `tree` is actually split over."""
  axes = set()
  for leaf in jax.tree_util.tree_leaves(tree):
    for entry in leaf.sharding.spec:
      names = entry if isinstance(entry, tuple) else (entry,) if entry else ()
      axes.update(a for a in names if leaf.sharding.mesh.shape[a] > 1)
  return sorted(axes)


def max_diff(a, b) -> float:
  diffs = jax.tree_util.tree_leaves(
    jax.tree_util.tree_map(lambda x, y: float(np.max(np.abs(x - y))), a, b)
  )
  return max(diffs, default=0.0)


def main():
  assert len(jax.devices()) == 8, jax.devices()
  config = helpers.load_config(
    "shapes_contrastive.py", sys.argv[1] if len(sys.argv) > 1 else "tiny"
  )
  config.optim.lr = 1e-3
  config.optim.name = sys.argv[2] if len(sys.argv) > 2 else "adamw"
  meshes = sys.argv[3:] or ["data=8"]
  batch = next(iter(pipeline.train_dataset(config)))
  loss1, gnorm1, params1, state1, _, _, _ = one_step(config, jax.devices()[:1], batch, {})
  out = {}
  for mesh in meshes:
    axes, _, option = mesh.partition("+")
    config.objectives.contrastive.sharded = option == "sharded_loss"
    mesh8 = config_utils.parse_arg(axes, data=1, fsdp=1, model=1).to_dict()
    loss8, gnorm8, params8, state8, param_axes, opt_axes, loss_name = one_step(
      config, jax.devices(), batch, mesh8
    )
    out[mesh] = {
      "loss1": loss1,
      "loss8": loss8,
      "grad_norm1": gnorm1,
      "grad_norm8": gnorm8,
      "max_param_diff": max_diff(params1, params8),
      "model_state_keys": sorted(state8),
      "max_model_state_diff": max_diff(state1, state8),
      "param_axes": param_axes,
      "opt_state_axes": opt_axes,
      "loss_fn": loss_name,
    }
  print(json.dumps(out))


if __name__ == "__main__":
  main()
