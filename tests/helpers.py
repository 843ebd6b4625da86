"""Shared test utilities: load configs, run train.py in a subprocess, read checkpoints."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(name: str, arg: str | None = None):
  from cmjax import config_utils

  return config_utils.load_config(os.path.join(ROOT, "configs", name), arg)


def train_cmd(workdir: str, config_arg: str, *overrides: str) -> list[str]:
  return [
    sys.executable,
    os.path.join(ROOT, "train.py"),
    f"--config={os.path.join(ROOT, 'configs', config_arg)}",
    f"--workdir={workdir}",
    *overrides,
  ]


def subprocess_env(**extra) -> dict:
  env = dict(os.environ, PYTHONUNBUFFERED="1", JAX_PLATFORMS="cpu")
  env.update(extra)
  return env


def run_train(workdir, config_arg, *overrides, check=True, timeout=600):
  proc = subprocess.run(
    train_cmd(workdir, config_arg, *overrides),
    env=subprocess_env(),
    capture_output=True,
    text=True,
    timeout=timeout,
    cwd=ROOT,
  )
  if check and proc.returncode:
    # The message shows why, not just the exit status.
    raise AssertionError(
      f"train.py {config_arg} {' '.join(overrides)} exited with "
      f"{proc.returncode}:\n{proc.stderr[-4000:]}"
    )
  return proc


def eval_context(config):
  """The `EvalContext` evaluators of `config` are built from."""
  from cmjax import experiment
  from cmjax.data import datasets
  from cmjax.evaluators import EvalContext

  dataset = datasets.build(config.data)
  return EvalContext(
    config=config, dataset=dataset, model=experiment.build_model(config, dataset.spec)
  )


def build_step(config, mesh, *, total_steps: int = 10):
  """`(experiment, abstract_state, init, jitted step)` of `config` on `mesh`."""
  from cmjax import experiment

  exp = experiment.build(config, mesh, total_steps=total_steps, warmup_steps=0)
  abstract, shardings, init = exp.init_state()
  return exp, abstract, init, exp.jit_step(shardings)


def load_params(workdir: str, step: int) -> dict[str, np.ndarray]:
  """Flat `{path: array}` of the params saved at `step` in `workdir`."""
  import jax
  import orbax.checkpoint as ocp

  path = os.path.join(workdir, "checkpoints", str(step), "state")
  state = ocp.StandardCheckpointer().restore(path)
  flat = jax.tree_util.tree_flatten_with_path(state["params"])[0]
  return {jax.tree_util.keystr(k): np.asarray(v) for k, v in flat}


def torch_bert_states(model, ids: np.ndarray, mask: np.ndarray):
  """`(last hidden states [batch, L, width], masked-mean embeddings [batch, width])`
  of a transformers `BertModel` (the reference of the BERT import tests)."""
  import torch

  with torch.no_grad():
    states = model(
      input_ids=torch.tensor(ids, dtype=torch.long),
      attention_mask=torch.tensor(mask, dtype=torch.long),
    ).last_hidden_state.numpy()
  mean = (states * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
  return states, mean


def perturb_norms_and_biases(model, scale: float = 0.1):
  """A torch reference model with non-trivial LayerNorm, bias and probe values
  (fresh ones are 1 and 0, which would hide a swapped scale and bias); eval mode."""
  import torch

  torch.manual_seed(1)
  with torch.no_grad():
    for name, p in model.named_parameters():
      if "norm" in name or name.endswith("bias") or "probe" in name:
        p.add_(scale * torch.randn_like(p))
  return model.eval()
