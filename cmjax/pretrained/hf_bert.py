"""A Hugging Face `BertModel` folder (`config.json` + `model.safetensors`) ->
the parameters and settings of cmjax's `bert` text encoder (`cmjax/models/bert.py`).

  encoder_config, params = hf_bert.load("/path/to/all-MiniLM-L6-v2")

`encoder_config` is what `config.model.text` takes (`name='bert'`, sizes);
`params` the encoder's parameter tree (numpy float32). Keys may carry a
`bert.` prefix (checkpoints of task models) or none (`BertModel` itself);
the pooler, which sentence embeddings do not use, is left out.
"""

from __future__ import annotations

import json
import os

import numpy as np

_PREFIXES = ("bert.", "")


def encoder_config(hf: dict) -> dict:
  """`config.model.text` for a `BertConfig` (as read from config.json)."""
  if hf.get("hidden_act", "gelu") != "gelu":
    raise ValueError(f"hidden_act={hf['hidden_act']!r}: only BERT's exact 'gelu' is supported.")
  if hf.get("position_embedding_type", "absolute") != "absolute":
    raise ValueError("only absolute position embeddings are supported.")
  return dict(
    name="bert",
    vocab_size=int(hf["vocab_size"]),
    max_len=int(hf["max_position_embeddings"]),
    width=int(hf["hidden_size"]),
    depth=int(hf["num_hidden_layers"]),
    num_heads=int(hf["num_attention_heads"]),
    mlp_dim=int(hf["intermediate_size"]),
    type_vocab_size=int(hf.get("type_vocab_size", 2)),
    epsilon=float(hf.get("layer_norm_eps", 1e-12)),
    pool="mean",
  )


def read_safetensors(folder: str) -> dict[str, np.ndarray]:
  """Every tensor of the folder's `*.safetensors` files, by name."""
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top

  files = sorted(f for f in os.listdir(folder) if f.endswith(".safetensors"))
  if not files:
    raise FileNotFoundError(f"{folder} holds no *.safetensors file (save with safe_serialization)")
  tensors = {}
  for name in files:
    tensors.update(load_file(os.path.join(folder, name)))
  return tensors


def convert(tensors: dict[str, np.ndarray], cfg: dict) -> dict:
  """`BertModel` tensors -> the `bert` encoder's parameter tree."""
  prefix = next((p for p in _PREFIXES if f"{p}embeddings.word_embeddings.weight" in tensors), None)
  if prefix is None:
    raise ValueError("not a BERT checkpoint: no embeddings.word_embeddings.weight")
  t = lambda name: np.asarray(tensors[prefix + name], np.float32)
  heads, width = cfg["num_heads"], cfg["width"]
  head_dim = width // heads

  def ln(name):
    return {"scale": t(f"{name}.weight"), "bias": t(f"{name}.bias")}

  def qkv(name):  # torch Linear [out, in] -> [in, heads, head_dim]
    return {
      "kernel": t(f"{name}.weight").T.reshape(width, heads, head_dim),
      "bias": t(f"{name}.bias").reshape(heads, head_dim),
    }

  def linear(name):
    return {"kernel": t(f"{name}.weight").T, "bias": t(f"{name}.bias")}

  params = {
    "token_embed": {"embedding": t("embeddings.word_embeddings.weight")},
    "pos_embed": {"embedding": t("embeddings.position_embeddings.weight")},
    "type_embed": {"embedding": t("embeddings.token_type_embeddings.weight")},
    "ln_embed": ln("embeddings.LayerNorm"),
  }
  for i in range(cfg["depth"]):
    p = f"encoder.layer.{i}."
    out = t(p + "attention.output.dense.weight").T.reshape(heads, head_dim, width)
    params[f"layer{i}"] = {
      "attn": {
        "query": qkv(p + "attention.self.query"),
        "key": qkv(p + "attention.self.key"),
        "value": qkv(p + "attention.self.value"),
        "out": {"kernel": out, "bias": t(p + "attention.output.dense.bias")},
      },
      "ln_attn": ln(p + "attention.output.LayerNorm"),
      "fc1": linear(p + "intermediate.dense"),
      "fc2": linear(p + "output.dense"),
      "ln_mlp": ln(p + "output.LayerNorm"),
    }
  return params


def load(folder: str) -> tuple[dict, dict]:
  """`(encoder config, parameter tree)` of a Hugging Face BERT folder."""
  with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
    cfg = encoder_config(json.load(f))
  return cfg, convert(read_safetensors(folder), cfg)
