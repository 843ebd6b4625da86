r"""Converts public pretrained weights into a folder `config.init_from` loads.

  python -m cmjax.pretrained.convert SRC DST [--activation=gelu] [--head_width=64]

SRC is one of
  a Hugging Face model folder (`config.json` + `*.safetensors`) of a
      `BertModel` (BERT, MiniLM, sentence-transformers: a text tower),
      `CLIPModel` or `SiglipModel` (a whole image-text model);
  an open_clip / OpenAI CLIP state dict, `*.safetensors` (`--activation`:
      'quick_gelu' for OpenAI's and `-quickgelu` weights, the default, or
      'gelu'; `--head_width`: 64);
  a big_vision two-towers checkpoint, `*.npz` (SigLIP).

DST gets the source folder's tokenizer files, the parameters as an Orbax checkpoint (`DST/state`, names as the cmjax
model has them: `image_encoder/transformer/block0/attn/query/kernel`, ...),
their checksums, and `DST/model.json`: the config settings the weights need
(`model` or `model.text`) and the `init_from` rules that load them. In a config:

  from cmjax.pretrained import convert
  convert.apply(config, "/weights/clip-b16")   # sets config.model... and config.init_from

Only the towers' parameters are converted; the pixel statistics, tokenizer and
text length a checkpoint expects are printed and written to model.json
(`data`) for the data config.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from typing import Any

import orbax.checkpoint as ocp

from cmjax import atomic_write
from cmjax import checkpoint_integrity as integrity

MODEL_FILE = "model.json"
FORMATS = ("hf_bert", "hf_clip", "hf_siglip", "open_clip", "big_vision")
# Tokenizer files of a Hugging Face folder, copied beside the converted weights.
TOKENIZER_FILES = (
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "vocab.txt",
  "vocab.json",
  "merges.txt",
  "spiece.model",
)


def detect(src: str) -> str:
  """Which of `FORMATS` SRC is; raises ValueError saying what was expected."""
  if os.path.isdir(src):
    path = os.path.join(src, "config.json")
    if not os.path.isfile(path):
      raise ValueError(f"{src} is a folder without config.json (not a Hugging Face model folder)")
    with open(path, encoding="utf-8") as f:
      hf = json.load(f)
    kind = hf.get("model_type")
    architectures = " ".join(hf.get("architectures") or [])
    for name in ("bert", "clip", "siglip"):
      if kind == name or f"{name.capitalize()}Model" in architectures:
        return f"hf_{name}"
    raise ValueError(
      f"{path}: model_type {kind!r} is not one this converter knows (bert, clip, siglip)."
    )
  if src.endswith(".safetensors"):
    return "open_clip"
  if src.endswith(".npz"):
    return "big_vision"
  raise ValueError(
    f"{src}: expected a Hugging Face model folder, an open_clip `.safetensors` state dict "
    "or a big_vision `.npz`."
  )


def read(src: str, activation: str = "quick_gelu", head_width: int = 64) -> tuple[dict, dict, dict]:
  """`(settings, rules, params)` of SRC: the config settings by dotted path, the
  `init_from` rules, the parameter tree (numpy)."""
  # pylint: disable=g-import-not-at-top
  from cmjax.pretrained import big_vision_npz, hf_bert, hf_clip, hf_siglip, open_clip_weights

  kind = detect(src)
  if kind == "hf_bert":
    cfg, params = hf_bert.load(src)
    return {"model.text": cfg}, [["(.*)", r"text_encoder/\1"]], params
  if kind == "open_clip":
    cfg, params = open_clip_weights.load(src, activation=activation, head_width=head_width)
  else:
    loader = {"hf_clip": hf_clip, "hf_siglip": hf_siglip, "big_vision": big_vision_npz}[kind]
    cfg, params = loader.load(src)
  return {"model": cfg}, [["(.*)", r"\1"]], params


def data_hints(settings: dict) -> dict:
  """What the data config needs for these weights (the text length the position
  table was trained at, SigLIP's padding)."""
  model = settings.get("model", {})
  text = model.get("text") or settings.get("model.text") or {}
  hints = {"max_text_len": text.get("max_len")}
  if text.get("mask_padding") is False:
    hints["note"] = (
      "SigLIP's text tower attends to its padding: pad every text to max_text_len with the "
      "tokenizer's pad id, e.g. tokenizer='sentencepiece:spiece.model', tokenizer_options="
      "dict(lowercase=True, strip_punctuation=True, pad_id=1)."
    )
  elif model.get("image", {}).get("pixel_norm") == "clip":
    hints["note"] = (
      "CLIP's tokenizer: tokenizer='hf:FOLDER/tokenizer.json', tokenizer_options="
      "dict(pad_id=<its pad id>); the image tower normalises pixels with CLIP's statistics."
    )
  return hints


def convert(src: str, dst: str, activation: str = "quick_gelu", head_width: int = 64) -> dict:
  """Writes `dst` (see the module docstring); returns what model.json holds."""
  if os.path.exists(dst) and os.listdir(dst):
    raise FileExistsError(f"{dst} exists and is not empty; choose a new folder.")
  settings, rules, params = read(src, activation, head_width)
  os.makedirs(dst, exist_ok=True)
  tree = {"params": params}
  with ocp.PyTreeCheckpointer() as writer:
    writer.save(os.path.join(os.path.abspath(dst), "state"), tree)
  info = {
    "source": os.path.abspath(src),
    "format": detect(src),
    "settings": settings,
    "init_from_rules": rules,
    "data": data_hints(settings),
  }
  if os.path.isdir(src):
    for name in TOKENIZER_FILES:
      if os.path.isfile(os.path.join(src, name)):
        shutil.copyfile(os.path.join(src, name), os.path.join(dst, name))
  atomic_write.write_text(os.path.join(dst, MODEL_FILE), json.dumps(info, indent=1))
  integrity.write_manifest(dst, integrity.host_summary(tree))
  return info


def _tuples(value: Any) -> Any:
  """JSON's lists back to the tuples configs hold (modalities, pixel statistics)."""
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  if isinstance(value, list):
    return tuple(_tuples(v) for v in value)
  return value


def _set(config: Any, path: str, value: Any) -> None:
  value = _tuples(value)
  *parents, leaf = path.split(".")
  node = config
  for p in parents:
    node = node[p]
  if isinstance(value, dict) and leaf in node and hasattr(node[leaf], "items"):
    for k, v in value.items():  # keep the entry's other keys (dtype, other towers)
      node[leaf][k] = v
  else:
    node[leaf] = value


def apply(config: Any, dst: str, **init_from: Any) -> dict:
  """Sets the settings `dst/model.json` holds in `config` and points
  `config.init_from` at `dst` (with its rules; `init_from` adds keys such as
  `strict=True`). Returns model.json's content."""
  path = os.path.join(dst, MODEL_FILE)
  try:
    with open(path, encoding="utf-8") as f:
      info = json.load(f)
  except FileNotFoundError:
    raise ValueError(
      f"{path} not found: convert the weights first (python -m cmjax.pretrained.convert SRC DST)"
    ) from None
  for key, value in info["settings"].items():
    _set(config, key, value)
  rules = [tuple(r) for r in info["init_from_rules"]]
  config.init_from.update({"path": os.path.abspath(dst), "rules": rules, **init_from})
  return info


def main(argv: list[str]) -> int:
  parser = argparse.ArgumentParser(
    prog="python -m cmjax.pretrained.convert", description=__doc__.split("\n")[0]
  )
  parser.add_argument("src")
  parser.add_argument("dst")
  parser.add_argument("--activation", default="quick_gelu", choices=["quick_gelu", "gelu"])
  parser.add_argument("--head_width", type=int, default=64)
  args = parser.parse_args(argv)
  t = time.time()
  info = convert(args.src, args.dst, args.activation, args.head_width)
  print(
    f"Wrote {args.dst} ({info['format']}) in {time.time() - t:.1f} s. Use it with "
    f"convert.apply(config, {args.dst!r}), which sets {', '.join(info['settings'])} and "
    f"config.init_from. Data: {json.dumps(info['data'])}"
  )
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
