"""A Hugging Face `CLIPModel` folder (`config.json` + `*.safetensors`) -> the
settings and parameters of cmjax's `contrastive` model with a CLIP image and
text tower.

  model_config, params = hf_clip.load("/path/to/clip-vit-base-patch16")

`model_config` is what `config.model` takes: a `vit` image tower with a class
token, `ln_pre`, quick-GELU and CLIP's pixel statistics, a causal
`transformer` text tower pooled at its last real token (the end-of-text token
CLIP's tokenizer puts there), bias-free projections and CLIP's temperature.
`params` is the model's parameter tree (numpy float32). The blocks' layout is
shared with SigLIP's (`hf_siglip`).
"""

from __future__ import annotations

import json
import os

import numpy as np

from cmjax.pretrained import torch_layout


def blocks(t: torch_layout.Tensors, depth: int, heads: int, final_norm: str) -> dict:
  """`encoder.layers.{i}` of a CLIP / SigLIP tower + its final LayerNorm -> the
  params of a cmjax `Transformer`."""
  params = {}
  for i in range(depth):
    p = f"encoder.layers.{i}."
    params[f"block{i}"] = {
      "ln_attn": t.layer_norm(p + "layer_norm1"),
      "attn": t.attention(
        *(p + f"self_attn.{n}_proj" for n in ("q", "k", "v", "out")), heads=heads
      ),
      "ln_mlp": t.layer_norm(p + "layer_norm2"),
      "mlp": {"fc1": t.linear(p + "mlp.fc1"), "fc2": t.linear(p + "mlp.fc2")},
    }
  params["ln_final"] = t.layer_norm(final_norm)
  return params


def tower_sizes(hf: dict) -> dict:
  """width, depth, num_heads, mlp_dim of a `CLIPVisionConfig` / `CLIPTextConfig`."""
  return dict(
    width=int(hf["hidden_size"]),
    depth=int(hf["num_hidden_layers"]),
    num_heads=int(hf["num_attention_heads"]),
    mlp_dim=int(hf["intermediate_size"]),
  )


def model_config(hf: dict) -> dict:
  """`config.model` for a `CLIPConfig` (as read from config.json)."""
  vision, text = hf.get("vision_config", {}), hf.get("text_config", {})
  return dict(
    name="contrastive",
    modalities=("image", "text"),
    embed_dim=int(hf.get("projection_dim", 512)),
    image=dict(
      name="vit",
      patch_size=int(vision["patch_size"]),
      **tower_sizes(vision),
      pool="cls",
      ln_pre=True,
      activation=torch_layout.activation(vision.get("hidden_act", "quick_gelu"), "vision_config"),
      ln_epsilon=float(vision.get("layer_norm_eps", 1e-5)),
      pixel_norm="clip",
    ),
    text=dict(
      name="transformer",
      vocab_size=int(text["vocab_size"]),
      max_len=int(text.get("max_position_embeddings", 77)),
      **tower_sizes(text),
      causal=True,
      pool="last",
      activation=torch_layout.activation(text.get("hidden_act", "quick_gelu"), "text_config"),
      ln_epsilon=float(text.get("layer_norm_eps", 1e-5)),
    ),
    logit_scale_init=float(hf.get("logit_scale_init_value", 2.6592)),
  )


def convert(tensors: dict[str, np.ndarray], cfg: dict) -> dict:
  """`CLIPModel` tensors -> the `contrastive` model's parameter tree."""
  t = torch_layout.Tensors(tensors, "the CLIP checkpoint")
  image, text = cfg["image"], cfg["text"]
  v = t.sub("vision_model.")
  w = t.sub("text_model.")
  return {
    "image_encoder": {
      "patch_embed": v.patch_conv("embeddings.patch_embedding"),
      "cls": v.get("embeddings.class_embedding"),
      "pos_embedding": v.get("embeddings.position_embedding.weight"),
      "ln_pre": v.layer_norm("pre_layrnorm"),
      # post_layernorm normalises the class token only; applied to every
      # token (our ln_final) it gives the same pooled vector.
      "transformer": blocks(v, image["depth"], image["num_heads"], "post_layernorm"),
    },
    "text_encoder": {
      "token_embed": w.embedding("embeddings.token_embedding"),
      "pos_embedding": w.get("embeddings.position_embedding.weight"),
      "transformer": blocks(w, text["depth"], text["num_heads"], "final_layer_norm"),
    },
    "image_proj": t.linear("visual_projection", bias=False),
    "text_proj": t.linear("text_projection", bias=False),
    "logit_scale": np.float32(t.get("logit_scale").reshape(())),
    "logit_bias": np.float32(0.0),
  }


def load(folder: str) -> tuple[dict, dict]:
  """`(config.model, parameter tree)` of a Hugging Face CLIP folder."""
  with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
    cfg = model_config(json.load(f))
  return cfg, convert(torch_layout.read_safetensors(folder), cfg)
