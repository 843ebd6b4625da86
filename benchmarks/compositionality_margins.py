r"""How far a trained model's scores move under the compositional swaps, beside
the move to another scene's caption: does it match at all, and does it bind?

  python benchmarks/compositionality_margins.py \
      --config=shapes_contrastive.py:loss=clip,seed=0,steps=1000,batch_size=64 \
      --workdirs=/tmp/cmjax-relation/compositionality/clip/steps1000_seed0,...

For each finished run (one workdir per seed, all of the architecture of
`--config`; each run's seed is read from its config.json), on the compositionality
evaluator's held-out scenes: how often the true caption outscores the next
scene's true caption (a control: 1.0 for any model that matches images with
captions), and the mean |score difference| of the true caption against each
swap and against that other caption (cosine for contrastive models, the
logit for matching heads).
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from benchmarks import runs  # noqa: E402
from cmjax import config_utils, trainer  # noqa: E402
from cmjax.data import datasets  # noqa: E402
from cmjax.data.shapes_text import SWAP_TYPES  # noqa: E402
from cmjax.evaluators import common, get_evaluator_cls  # noqa: E402

flags.DEFINE_string("config", None, "configs/<file>:<arg> of the runs.", required=True)
flags.DEFINE_list("workdirs", None, "Finished runs of that config.", required=True)
flags.DEFINE_integer("num_examples", 1000, "Held-out scenes (as the evaluator's default).")
FLAGS = flags.FLAGS


def margins(config_arg: str, workdir: str) -> dict:
  with open(os.path.join(workdir, "config.json")) as f:
    seed = json.load(f)["config"]["seed"]
  # The architecture is all that matters here; the held-out scenes do not depend on the seed.
  config = config_utils.load_config(os.path.join(runs.ROOT, "configs", config_arg))
  model, variables, step = trainer.load_trained(config, workdir)
  ctx = common.EvalContext(config=config, dataset=datasets.build(config.data), model=model)
  entry = dict(type="compositionality", split="test", num_examples=FLAGS.num_examples)
  ev = get_evaluator_cls("compositionality")(entry, ctx)
  s = ev.scores(variables)  # [n, 4]: true caption, then the three swaps
  # The control: each scene against the next scene's true caption.
  ids, mask = ev.texts[0]
  other_texts = [(np.roll(ids, 1, 0), np.roll(mask, 1, 0))]
  saved, ev.texts = ev.texts, other_texts
  other = ev.scores(variables)[:, 0]
  ev.texts = saved
  out = {"step": step, "seed": seed, "scenes": len(s)}
  out["true_beats_other_scene"] = float(np.mean(s[:, 0] > other))
  out["mean_abs_diff/other_scene"] = float(np.mean(np.abs(s[:, 0] - other)))
  for k, swap in enumerate(SWAP_TYPES):
    rows = ev.has[:, k]
    out[f"mean_abs_diff/{swap}"] = float(np.mean(np.abs(s[rows, 0] - s[rows, 1 + k])))
  return out


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # not the checkpoint library's INFO lines
  rows = [margins(FLAGS.config, w) for w in FLAGS.workdirs]
  for r in rows:
    print(json.dumps(r), flush=True)
  keys = [k for k in rows[0] if k not in ("step", "seed", "scenes")]
  print(f"{FLAGS.config}, {len(rows)} runs (mean ± std):")
  for k in keys:
    v = np.array([r[k] for r in rows])
    print(f"  {k}: {v.mean():.4f} ± {v.std(ddof=1) if len(v) > 1 else 0:.4f}")


if __name__ == "__main__":
  app.run(main)
