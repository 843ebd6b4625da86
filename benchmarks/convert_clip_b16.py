r"""Converting and loading a CLIP ViT-B/16-sized checkpoint on this machine.

  python benchmarks/convert_clip_b16.py --out benchmarks/results/convert_clip_b16_cpu.json

A randomly initialised Hugging Face `CLIPModel` with ViT-B/16's sizes (image
tower 768 wide, 12 blocks, 224-pixel images in 16-pixel patches; text tower
512 wide, 12 blocks, 49,408 tokens; 150 M parameters, 600 MB in float32) is
saved as safetensors (needs torch and transformers, as the tests do; no
download), then, each in its own process, timed and with its peak resident
memory:

1. `python -m cmjax.pretrained.convert SRC DST`;
2. a `train.py` run of 2 steps (batch 2) on shapes at 224 pixels that loads
   the converted image tower, its projection and the temperature through
   `config.init_from` (the text tower stays fresh: the shapes vocabulary is
   not CLIP's) with the image tower locked.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
flags.DEFINE_string("out", "", "Write the measurements here (JSON).")
FLAGS = flags.FLAGS

CONFIG = """
from cmjax import config_utils
from cmjax.pretrained import convert

def get_config(arg=None):
  c = config_utils.load_config({contrastive!r}, "steps=2,batch_size=2")
  c.data.update(image_size=224, num_train=16, speech=False)
  convert.apply(c, {dst!r}, rules=[(r"(image_encoder/.*|image_proj/.*|logit_scale)", r"\\1")])
  c.model.text = dict(name="transformer", width=512, depth=12, num_heads=8, mlp_dim=2048)
  c.optim.warmup_steps = 1
  c.optim.groups = [("image_(encoder|proj)/.*", dict(frozen=True))]
  c.evals = {{}}
  c.checkpoint_every_steps = 2
  return c
"""


# Runs a command and reports its peak resident memory (KiB) as the last line of
# stderr: a fresh process, so that RUSAGE_CHILDREN holds only that command.
_MEASURE = (
  "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
  "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
  "sys.exit(r.returncode)"
)


def _timed(cmd: list[str]) -> dict:
  """Wall time and peak resident memory of `cmd`."""
  t = time.perf_counter()
  proc = subprocess.run(
    [sys.executable, "-c", _MEASURE, *cmd], cwd=ROOT, capture_output=True, text=True
  )
  wall = time.perf_counter() - t
  if proc.returncode:
    raise RuntimeError(f"{cmd} failed:\n{proc.stderr[-3000:]}")
  peak_kib = int(proc.stderr.strip().splitlines()[-1])
  return {"seconds": round(wall, 1), "peak_rss_gib": round(peak_kib / 2**20, 2)}


def main(argv):
  del argv
  import torch
  import transformers

  tmp = tempfile.mkdtemp(prefix="cmjax-b16-")
  src, dst = os.path.join(tmp, "hf"), os.path.join(tmp, "converted")
  config = transformers.CLIPConfig(
    vision_config=dict(
      hidden_size=768,
      intermediate_size=3072,
      num_hidden_layers=12,
      num_attention_heads=12,
      image_size=224,
      patch_size=16,
    ),
    text_config=dict(
      hidden_size=512,
      intermediate_size=2048,
      num_hidden_layers=12,
      num_attention_heads=8,
      vocab_size=49408,
      max_position_embeddings=77,
    ),
    projection_dim=512,
  )
  torch.manual_seed(0)
  model = transformers.CLIPModel(config)
  params = sum(p.numel() for p in model.parameters())
  model.save_pretrained(src, safe_serialization=True)
  size = sum(os.path.getsize(os.path.join(src, f)) for f in os.listdir(src))
  del model
  result = {
    "parameters": params,
    "safetensors_mb": round(size / 1e6),
    "convert": _timed([sys.executable, "-m", "cmjax.pretrained.convert", src, dst]),
  }
  config_path = os.path.join(tmp, "b16_run.py")
  with open(config_path, "w") as f:
    f.write(
      CONFIG.format(contrastive=os.path.join(ROOT, "configs", "shapes_contrastive.py"), dst=dst)
    )
  workdir = os.path.join(tmp, "run")
  result["load_and_train_2_steps"] = _timed(
    [
      sys.executable,
      os.path.join(ROOT, "train.py"),
      f"--config={config_path}",
      f"--workdir={workdir}",
    ]
  )
  with open(os.path.join(workdir, "metrics.json")) as f:
    result["run_final_step"] = json.load(f)["step"]
  result["cpu_count"] = os.cpu_count()
  print(json.dumps(result, indent=1))
  if FLAGS.out:
    with open(FLAGS.out, "w") as f:
      json.dump(result, f, indent=1)


if __name__ == "__main__":
  app.run(main)
