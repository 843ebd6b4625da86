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

from cmjax.pretrained import torch_layout

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


def convert(tensors: dict[str, np.ndarray], cfg: dict) -> dict:
  """`BertModel` tensors -> the `bert` encoder's parameter tree."""
  prefix = next((p for p in _PREFIXES if f"{p}embeddings.word_embeddings.weight" in tensors), None)
  if prefix is None:
    raise ValueError("not a BERT checkpoint: no embeddings.word_embeddings.weight")
  t = torch_layout.Tensors(tensors, "the BERT checkpoint", prefix)
  params = {
    "token_embed": t.embedding("embeddings.word_embeddings"),
    "pos_embed": t.embedding("embeddings.position_embeddings"),
    "type_embed": t.embedding("embeddings.token_type_embeddings"),
    "ln_embed": t.layer_norm("embeddings.LayerNorm"),
  }
  for i in range(cfg["depth"]):
    p = f"encoder.layer.{i}."
    params[f"layer{i}"] = {
      "attn": t.attention(
        p + "attention.self.query",
        p + "attention.self.key",
        p + "attention.self.value",
        p + "attention.output.dense",
        cfg["num_heads"],
      ),
      "ln_attn": t.layer_norm(p + "attention.output.LayerNorm"),
      "fc1": t.linear(p + "intermediate.dense"),
      "fc2": t.linear(p + "output.dense"),
      "ln_mlp": t.layer_norm(p + "output.LayerNorm"),
    }
  return params


def load(folder: str) -> tuple[dict, dict]:
  """`(encoder config, parameter tree)` of a Hugging Face BERT folder."""
  with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
    cfg = encoder_config(json.load(f))
  return cfg, convert(torch_layout.read_safetensors(folder), cfg)
