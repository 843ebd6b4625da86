"""A researcher's own dataset, model, objective and evaluator, registered from a module
outside cmjax/ and named in `config.imports`, train end to end through train.py;
weighted objectives with schedules, frozen parameter groups, the EMA train step,
and the checks that run before anything is compiled."""

import json
import os
import sys
import textwrap

import jax
import numpy as np
import pytest

from tests import helpers

PLUGIN = textwrap.dedent('''
    """A toy method: 8x8 images, label = are its pixels bright; a classifier with an
    embedding penalty. Everything registered here, nothing in cmjax/."""
    import flax.linen as nn
    import grain
    import jax.numpy as jnp
    import numpy as np

    from cmjax import objectives
    from cmjax.data import datasets
    from cmjax.data import spec as spec_lib
    from cmjax.evaluators import common
    from cmjax.models import registry


    class ToySource:
      def __init__(self, n, seed):
        rng = np.random.default_rng(seed)
        self.bright = rng.integers(0, 2, n)  # dark pixels in [0, 128), bright in [128, 256)
        self.images = (rng.integers(0, 128, (n, 8, 8, 3)) + 128 * self.bright[:, None, None, None]
                       ).astype(np.uint8)
      def __len__(self):
        return len(self.images)
      def __getitem__(self, i):
        image = self.images[i]
        return {"image": image, "label": np.int32(self.bright[i]), "index": np.int32(i)}


    class ToyPreprocess(grain.transforms.RandomMap):
      def random_map(self, record, rng):
        del rng
        return {"image": record["image"], "label": record["label"]}


    @datasets.register("toy_bright")
    class ToyBright(datasets.Dataset):
      @property
      def spec(self):
        return spec_lib.ElementSpec(
            dataset="toy_bright", modalities=("image",),
            features={**spec_lib.modality_features("image", image_size=8),
                      "label": spec_lib.Feature((), "int32")},
            labels={"label": 2})
      def source(self, split, *, seed, num_examples=None, **overrides):
        return ToySource(num_examples or (256 if split == "train" else 64),
                         seed + (split != "train") * 1000)
      def preprocess(self, train=True):
        return ToyPreprocess()


    @registry.register("toy_mlp")
    class ToyMLP(nn.Module):
      data: object = None
      width: int = 16
      @nn.compact
      def __call__(self, batch, *, train=False):
        x = batch["image"].reshape(batch["image"].shape[0], -1).astype(jnp.float32) / 127.5 - 1.0
        h = nn.relu(nn.Dense(self.width, name="encoder")(x))
        return {"embedding": h,
                "logits/label": nn.Dense(self.data.labels["label"], name="head")(h)}


    @objectives.register("toy_l2")
    class ToyL2(objectives.Objective):
      needs_outputs = ("embedding",)
      def __call__(self, outputs, batch, step):
        loss = jnp.mean(jnp.sum(outputs["embedding"] ** 2, -1))
        return loss, {"mean_norm": jnp.mean(jnp.linalg.norm(outputs["embedding"], axis=-1))}


    @objectives.register("toy_needs_question")
    class ToyNeedsQuestion(ToyL2):
      needs_batch = ("question",)


    @common.register("toy_accuracy")
    class ToyAccuracy:
      def __init__(self, entry, ctx):
        self.every_steps = common.every(entry, 0)
        source = ctx.dataset.source("test", seed=0)
        self.images = np.stack([source[i]["image"] for i in range(len(source))])
        self.labels = np.array([source[i]["label"] for i in range(len(source))])
        self.model = ctx.model
      def run(self, variables):
        logits = self.model.apply(variables, {"image": self.images})["logits/label"]
        yield "toy/accuracy", float(np.mean(np.argmax(logits, -1) == self.labels))
''')

CONFIG = textwrap.dedent("""
    import ml_collections
    from cmjax import config_utils

    def get_config(arg=None):
      arg = config_utils.parse_arg(arg, steps=12)
      c = ml_collections.ConfigDict()
      c.seed = 0
      c.imports = ("toy_plugin",)
      c.data = dict(name="toy_bright", num_workers=0)
      c.batch_size = 32
      c.total_steps = arg.steps
      c.total_epochs = None
      c.total_examples = None
      c.model = dict(name="toy_mlp", width=16)
      c.objectives = dict(
          ce=dict(type="classification"),
          l2=dict(type="toy_l2", weight=dict(schedule="linear", init_value=0.0,
                                             end_value=0.01, transition_steps=8)))
      config_utils.set_training_defaults(c)
      c.optim.lr = 3e-2
      c.optim.warmup_steps = 2
      c.steps_per_call = 1
      c.log_every_steps = 4
      c.checkpoint_every_steps = 6
      c.peak_flops = 1e11
      c.evals = dict(toy=dict(type="toy_accuracy", every_steps=0))
      return c
""")


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
  d = tmp_path_factory.mktemp("my_project")
  (d / "toy_plugin.py").write_text(PLUGIN)
  (d / "toy_config.py").write_text(CONFIG)
  sys.path.insert(0, str(d))
  yield d
  sys.path.remove(str(d))


def _config(plugin_dir, arg=None):
  from cmjax import config_utils

  return config_utils.load_config(str(plugin_dir / "toy_config.py"), arg)


def test_own_modules_train_end_to_end_through_train_py(plugin_dir, tmp_path):
  workdir = str(tmp_path / "run")
  cmd = [
    sys.executable,
    os.path.join(helpers.ROOT, "train.py"),
    f"--config={plugin_dir / 'toy_config.py'}",
    f"--workdir={workdir}",
    "--config.step=ema",
  ]
  env = helpers.subprocess_env(PYTHONPATH=f"{plugin_dir}{os.pathsep}{helpers.ROOT}")
  import subprocess

  proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=helpers.ROOT)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(os.path.join(workdir, "metrics.json")) as f:
    m = json.load(f)
  assert m["step"] == 12
  # Trained: well above chance (0.5) on the held-out split.
  assert m["toy/accuracy"] > 0.75, m["toy/accuracy"]
  # Both terms, their metrics prefixed, the scheduled weight at step 11 (log of step 12).
  assert np.isfinite(m["train/ce/loss"]) and np.isfinite(m["train/l2/loss"])
  assert "train/l2/mean_norm" in m and "train/ce/accuracy/label" in m
  assert m["train/l2/weight"] == pytest.approx(0.01)
  total = m["train/ce/loss"] + m["train/l2/weight"] * m["train/l2/loss"]
  assert m["train/loss"] == pytest.approx(total, rel=1e-5)
  with open(os.path.join(workdir, "config.json")) as f:
    written = json.load(f)
  assert (
    written["config"]["imports"] == ["toy_plugin"] and written["data"]["dataset"] == "toy_bright"
  )
  # The EMA step's extra state is checkpointed beside the params, with their shapes.
  import orbax.checkpoint as ocp

  state = ocp.StandardCheckpointer().restore(os.path.join(workdir, "checkpoints", "12", "state"))
  ema, params = state["extra"]["ema_params"], state["params"]
  assert jax.tree_util.tree_structure(ema) == jax.tree_util.tree_structure(params)
  assert any(
    not np.array_equal(a, b)
    for a, b in zip(jax.tree_util.tree_leaves(ema), jax.tree_util.tree_leaves(params))
  )
  # A rerun restores it all and leaves the finished run as it is.
  again = subprocess.run(
    cmd, env=env, capture_output=True, text=True, timeout=600, cwd=helpers.ROOT
  )
  assert again.returncode == 0, again.stderr[-3000:]
  assert "already finished" in again.stdout
  with open(os.path.join(workdir, "metrics.json")) as f:
    assert json.load(f) == m


def _train(config, steps):
  from cmjax import experiment, sharding
  from cmjax.data import pipeline

  mesh = sharding.make_mesh({}, devices=jax.devices()[:1])
  exp = experiment.build(config, mesh, total_steps=steps, warmup_steps=0)
  _, shardings, init = exp.init_state()
  step = exp.jit_step(shardings)
  state = init()
  first = jax.device_get(state)
  data = iter(pipeline.train_dataset(config, exp.dataset))
  for _ in range(steps):
    state, _ = step(state, sharding.global_batch(next(data), mesh))
  return first, jax.device_get(state)


def test_a_frozen_group_is_bitwise_unchanged_while_the_rest_moves(plugin_dir):
  config = _config(plugin_dir)
  config.optim.groups = [("encoder/.*", dict(frozen=True)), ("head/bias", dict(lr_mult=0.0))]
  first, last = _train(config, 3)
  for name in ("kernel", "bias"):
    np.testing.assert_array_equal(first.params["encoder"][name], last.params["encoder"][name])
  assert not np.array_equal(first.params["head"]["kernel"], last.params["head"]["kernel"])
  np.testing.assert_array_equal(first.params["head"]["bias"], last.params["head"]["bias"])
  # No optimizer state for the frozen parameters: only head's moments are kept.
  moment_shapes = sorted(
    a.shape for a in jax.tree_util.tree_leaves(last.opt_state) if np.ndim(a) >= 1
  )
  assert (192, 16) not in moment_shapes and (16, 2) in moment_shapes


def test_group_rules_that_match_nothing_are_refused_naming_the_rule(plugin_dir):
  from cmjax import experiment

  config = _config(plugin_dir)
  config.optim.groups = [("text_encoder/.*", dict(frozen=True))]
  with pytest.raises(ValueError, match=r"groups\[0\] regex 'text_encoder/\.\*' matches no"):
    experiment.build(config, total_steps=4, warmup_steps=0)
  config.optim.groups = [("head/.*", dict(frozen=True))]
  config.optim.groups_exhaustive = True
  with pytest.raises(ValueError, match="'encoder/bias' is matched by no rule"):
    experiment.build(config, total_steps=4, warmup_steps=0)


def test_an_objective_missing_a_batch_key_is_refused_before_compiling(plugin_dir):
  from cmjax import experiment

  config = _config(plugin_dir)
  config.objectives.l2.type = "toy_needs_question"
  with pytest.raises(ValueError, match=r"config.objectives.l2 needs batch keys \['question'\]"):
    experiment.build(config, total_steps=4, warmup_steps=0)


def test_weight_schedules_and_bad_weights():
  from cmjax.objectives import base

  w = base.make_weight(
    dict(schedule="linear", init_value=0.0, end_value=1.0, transition_steps=10),
    "config.objectives.x",
  )
  assert float(w(0)) == 0.0 and float(w(5)) == pytest.approx(0.5) and float(w(20)) == 1.0
  assert base.make_weight(0.5, "x") == 0.5
  with pytest.raises(ValueError, match="config.objectives.x.weight.schedule='cosinus'"):
    base.make_weight(dict(schedule="cosinus"), "config.objectives.x")
  with pytest.raises(ValueError, match="bad arguments"):
    base.make_weight(dict(schedule="linear", init=0.0), "config.objectives.x")


def test_an_import_that_fails_names_the_config_key(tmp_path):
  from cmjax import experiment

  config = helpers.load_config("shapes_contrastive.py", "tiny")
  config.imports = ("no_such_module_xyz",)
  with pytest.raises(ValueError, match="config.imports names 'no_such_module_xyz'"):
    experiment.validate_config(config, num_devices=1)
