r"""Input pipeline throughput next to the train step's appetite, in one run.

  python benchmarks/pipeline_vs_step.py                    # default experiment
  python benchmarks/pipeline_vs_step.py --config=configs/shapes_contrastive.py:batch_size=64

Prints one table: examples/s of the compiled train step (on one real batch,
repeated), of the grain pipeline reading the cached split (with the config's
worker count and with none), and of generating examples from scratch with all
cores (what the first run of a new data config pays once), each with its ratio
to the train step. A ratio above 1 means the data keeps up with the model.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from benchmarks import step_timing  # noqa: E402
from cmjax.data import datasets, pipeline  # noqa: E402

config_flags.DEFINE_config_file(
  "config",
  os.path.join(os.path.dirname(__file__), "..", "configs", "shapes_contrastive.py"),
  "Experiment config.",
)
flags.DEFINE_integer("batches", 20, "Batches timed for each measurement.")


def pipeline_rate(config, workers: int, batches: int) -> float:
  config = config.copy_and_resolve_references()
  config.data.num_workers = workers
  it = iter(pipeline.train_dataset(config))
  next(it)  # start-up (worker processes, first batch) is not throughput
  t = time.perf_counter()
  for _ in range(batches):
    next(it)
  return batches * config.batch_size / (time.perf_counter() - t)


def generator_rate(config, num_examples: int = 256) -> float:
  """Examples/s of generating a split from scratch with all cores (first run only)."""
  import functools  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top

  from cmjax.data import cache  # pylint: disable=g-import-not-at-top

  ds = datasets.build(config.data)
  kwargs = {k: config.data[k] for k in ds.option_keys if k in config.data}
  factory = functools.partial(
    ds.source_cls, split="train", seed=123, num_examples=num_examples, **kwargs
  )
  with tempfile.TemporaryDirectory() as d:
    t = time.perf_counter()
    cache.materialize(factory, os.path.join(d, "c"))
    return num_examples / (time.perf_counter() - t)


def step_rate(config, batches: int) -> float:
  return step_timing.CompiledStep(config).run(batches)


def main(argv):
  del argv
  config = flags.FLAGS.config
  n = flags.FLAGS.batches
  model_rate = step_rate(config, n)
  rows = [("train step (one real batch, repeated)", model_rate)]
  for w in sorted({0, config.data.num_workers}):
    rows.append((f"pipeline from cache, {w} worker process(es)", pipeline_rate(config, w, n)))
  rows.append((f"generating uncached, {os.cpu_count()} processes", generator_rate(config)))
  print(
    f"\nbatch {config.batch_size}, {jax.device_count()} {jax.devices()[0].platform} "
    f"device(s), {os.cpu_count()} CPU cores"
  )
  print(f"| {'measurement':46s} | examples/s | ratio to train step |")
  print(f"|{'-' * 48}|-----------:|--------------------:|")
  for name, rate in rows:
    print(f"| {name:46s} | {rate:10.1f} | {rate / model_rate:19.2f} |")


if __name__ == "__main__":
  app.run(main)
