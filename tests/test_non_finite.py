"""Non-finite updates are skipped inside the step, counted without a sync per step,
and a run that keeps making them stops with a message naming the batch."""

import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmjax import bad_steps, sharding, trainer
from cmjax.data import datasets, pipeline
from tests import helpers


def _config():
  config = helpers.load_config("shapes_classify.py", "tiny,modalities=image+audio")
  config.optim.warmup_steps = 0
  return config


def _run(config, batches):
  mesh = sharding.make_mesh({}, devices=jax.devices()[:1])
  _, _, init, step = helpers.build_step(config, mesh)
  state, skipped = init(), []
  for batch in batches:
    state, metrics = step(state, sharding.global_batch(batch, mesh))
    skipped.append(int(metrics.get("skipped", 0)))
  return jax.device_get(state), skipped


def test_a_nan_batch_leaves_the_run_as_if_it_had_not_come():
  """Bitwise on CPU: batches 0, 1, NaN, 3, 4 give the parameters that the bare,
  unguarded step gives on 0, 1, 3, 4 (so finite steps are untouched too)."""
  config = _config()
  it = iter(pipeline.train_dataset(config))
  batches = [next(it) for _ in range(5)]
  poisoned = dict(batches[2], audio=batches[2]["audio"].copy())
  poisoned["audio"][3, 100] = np.nan
  with_nan, skipped = _run(config, batches[:2] + [poisoned] + batches[3:])
  config.skip_non_finite = False
  without, _ = _run(config, batches[:2] + batches[3:])
  assert skipped == [0, 0, 1, 0, 0]
  assert int(with_nan.step) == int(without.step) == 4
  for a, b in zip(jax.tree_util.tree_leaves(with_nan), jax.tree_util.tree_leaves(without)):
    np.testing.assert_array_equal(a, b)


def test_the_guard_can_be_turned_off():
  config = _config()
  config.skip_non_finite = False
  it = iter(pipeline.train_dataset(config))
  batch = next(it)
  batch["audio"][0, 0] = np.inf
  mesh = sharding.make_mesh({}, devices=jax.devices()[:1])
  _, _, init, step = helpers.build_step(config, mesh)
  state, metrics = step(init(), sharding.global_batch(batch, mesh))
  assert "skipped" not in metrics and not np.isfinite(float(metrics["loss"]))


@pytest.mark.parametrize(
  "marks, want",
  [
    ([0, 1, 1], [2, 2]),
    ([1, 1, 0], [2, 0]),
    ([[1, 1], [0, 1], [1, 1]], [5, 3]),  # stacked marks of several steps per call
  ],
)
def test_counts_of_skipped_updates(marks, want):
  counter = bad_steps.BadStepCounter(10, lambda s: "", lambda: None)
  for m in marks:
    counter.add({"skipped": jnp.asarray(m)})
  assert counter.check(step=6) == want[0]
  assert int(counter.counts[1]) == want[1]


def test_batch_examples_are_the_ones_the_pipeline_reads():
  config = helpers.load_config("shapes_classify.py", "tiny,modalities=image")
  config.data.extras = ("num_objects",)
  dataset = datasets.build(config.data)
  source = dataset.source("train", seed=config.seed)
  it = iter(pipeline.train_dataset(config, dataset))
  for step in range(3):
    batch = next(it)
    want = [int(source[i]["label"]) for i in pipeline.batch_examples(config, source, step)]
    np.testing.assert_array_equal(batch["label"], want)


def test_a_run_that_keeps_diverging_stops_and_names_the_batch(tmp_path):
  config = _config()
  config.optim.lr = 1e30  # the first update overflows; every later one is skipped
  config.max_bad_steps = 2
  config.log_every_steps = 1
  with pytest.raises(bad_steps.BadStepsError) as err:
    trainer.train_and_evaluate(config, str(tmp_path))
  message = str(err.value)
  assert "were skipped (config.max_bad_steps=2" in message
  assert "The first of those batches: examples [" in message
  assert re.search(r"newest verified checkpoint is (step \d+|none)", message)
  assert "bad input data" in message and "config.optim.lr" in message
  assert os.path.isdir(tmp_path / "checkpoints")


def _multi(config, chunks):
  from cmjax import experiment, multi_step

  mesh = sharding.make_mesh({}, devices=jax.devices()[:1])
  exp = experiment.build(config, mesh, total_steps=10, warmup_steps=0)
  _, shardings, init = exp.init_state()
  fn, state, skipped = exp.jit_multi_step(shardings), init(), []
  for chunk in chunks:
    state, metrics = fn(state, multi_step.global_stacked_batch(chunk, mesh))
    skipped += [int(v) for v in metrics.get("skipped", np.zeros(len(chunk)))]
  return jax.device_get(state), skipped


def test_several_steps_per_call_bitwise_and_a_nan_step_skipped():
  """A finite chunk is the bare chunk bit for bit; a chunk with a NaN batch is
  redone step by step, skipping only that update."""
  config = _config()
  it = iter(pipeline.train_dataset(config))
  batches = [next(it) for _ in range(4)]
  guarded, skipped = _multi(config, [batches[:2], batches[2:]])
  config.skip_non_finite = False
  bare, _ = _multi(config, [batches[:2], batches[2:]])
  for a, b in zip(jax.tree_util.tree_leaves(guarded), jax.tree_util.tree_leaves(bare)):
    np.testing.assert_array_equal(a, b)
  assert skipped == [0, 0, 0, 0]
  config.skip_non_finite = True
  poisoned = dict(batches[1], audio=batches[1]["audio"].copy())
  poisoned["audio"][0, 0] = np.nan
  state, skipped = _multi(config, [[batches[0], poisoned], batches[2:]])
  assert skipped == [0, 1, 0, 0] and int(state.step) == 3
