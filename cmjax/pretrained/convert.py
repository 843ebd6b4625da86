r"""Converts public pretrained weights into a folder `config.init_from` loads.

  python -m cmjax.pretrained.convert SRC DST

SRC is a Hugging Face model folder (`config.json` + `*.safetensors`) of a
`BertModel` (BERT, MiniLM, sentence-transformers). DST gets the parameters
as an Orbax checkpoint (`DST/state`, names as the cmjax encoder has them:
`token_embed/embedding`, `layer0/attn/query/kernel`, ...), their checksums,
and `DST/model.json`: the encoder settings to put in `config.model.text`.
Load it into a run's text tower with

  config.init_from = dict(path=DST, rules=[(r"(.*)", r"text_encoder/\1")])
"""

from __future__ import annotations

import json
import os
import sys
import time

import orbax.checkpoint as ocp

from cmjax import atomic_write
from cmjax import checkpoint_integrity as integrity
from cmjax.pretrained import hf_bert

MODEL_FILE = "model.json"


def _kind(src: str) -> str:
  with open(os.path.join(src, "config.json"), encoding="utf-8") as f:
    hf = json.load(f)
  if hf.get("model_type") == "bert" or "BertModel" in hf.get("architectures", []):
    return "hf_bert"
  raise ValueError(
    f"{src}/config.json: model_type {hf.get('model_type')!r} is not one this converter "
    "knows (it knows: bert)."
  )


def convert(src: str, dst: str) -> dict:
  """Writes `dst` (see the module docstring); returns the encoder settings."""
  if os.path.exists(dst) and os.listdir(dst):
    raise FileExistsError(f"{dst} exists and is not empty; choose a new folder.")
  _kind(src)
  cfg, params = hf_bert.load(src)
  os.makedirs(dst, exist_ok=True)
  tree = {"params": params}
  with ocp.PyTreeCheckpointer() as writer:
    writer.save(os.path.join(os.path.abspath(dst), "state"), tree)
  atomic_write.write_text(os.path.join(dst, MODEL_FILE), json.dumps(cfg, indent=1))
  integrity.write_manifest(dst, integrity.host_summary(tree))
  return cfg


def main(argv: list[str]) -> int:
  if len(argv) != 2:
    print("usage: python -m cmjax.pretrained.convert SRC DST", file=sys.stderr)
    return 2
  t = time.time()
  cfg = convert(argv[0], argv[1])
  print(
    f"Wrote {argv[1]} in {time.time() - t:.1f} s; its encoder settings for "
    f"config.model.text: {json.dumps(cfg)}"
  )
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
