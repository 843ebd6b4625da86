r"""Caption decoding speed: greedy and beam search, with and without the key/value cache.

  python benchmarks/decoding_speed.py --out benchmarks/results/decoding_speed_cpu.json

The captioner of configs/shapes_captioning.py (full size, random weights: the
speed does not depend on them) generates `--max_len` tokens for a batch of
images, under `jit`; each variant is compiled first, then timed over
`--repeats` calls (median). Tokens/s counts every generated position of every
sequence (of every beam for beam search), so the cache's speed-up is the
ratio of the two rows measured in this same run.
"""

import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from cmjax import config_utils, experiment  # noqa: E402
from cmjax.data import datasets  # noqa: E402
from cmjax.models.captioner import Generator  # noqa: E402

flags.DEFINE_integer("batch", 32, "Images per call.")
flags.DEFINE_integer("max_len", 20, "Tokens per caption (bos included).")
flags.DEFINE_list("beams", ["1", "4"], "Beam widths (1: greedy).")
flags.DEFINE_integer("repeats", 5, "Timed calls per variant.")
flags.DEFINE_string("out", "", "Write the results as JSON here.")
FLAGS = flags.FLAGS
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv):
  del argv
  config = config_utils.load_config(os.path.join(ROOT, "configs", "shapes_captioning.py"))
  spec = datasets.build(config.data).spec
  model = experiment.build_model(config, spec)
  size = spec.features["image"].shape
  images = np.random.default_rng(0).integers(0, 256, (FLAGS.batch, *size), dtype=np.uint8)
  batch = {"image": images[:2], "text": np.zeros((2, spec.text_length()), np.int32)}
  batch["text_mask"] = batch["text"] > 0
  variables = jax.jit(lambda b: model.init(jax.random.key(0), b))(batch)
  rows = []
  for beam in (int(b) for b in FLAGS.beams):
    for cache in (True, False):
      generate = Generator(model, max_len=FLAGS.max_len, beam_size=beam, cache=cache)
      jax.block_until_ready(generate(variables, images))  # compile
      times = []
      for _ in range(FLAGS.repeats):
        t = time.perf_counter()
        jax.block_until_ready(generate(variables, images))
        times.append(time.perf_counter() - t)
      seconds = statistics.median(times)
      tokens = FLAGS.batch * beam * (FLAGS.max_len - 1)
      rows.append(dict(beam=beam, cache=cache, seconds=seconds, tokens_per_s=tokens / seconds))
      print(f"beam {beam}, cache {cache}: {seconds * 1e3:.0f} ms, {tokens / seconds:,.0f} tokens/s")
  for beam in (int(b) for b in FLAGS.beams):
    with_cache, without = (r for r in rows if r["beam"] == beam)
    print(f"beam {beam}: the cache is {without['seconds'] / with_cache['seconds']:.2f}x faster")
  if FLAGS.out:
    info = dict(
      batch=FLAGS.batch,
      max_len=FLAGS.max_len,
      device=jax.devices()[0].device_kind,
      decoder=config.model.decoder.to_dict(),
      rows=rows,
    )
    with open(FLAGS.out, "w") as f:
      json.dump(info, f, indent=1)


if __name__ == "__main__":
  app.run(main)
