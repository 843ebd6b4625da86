"""A Hugging Face `SiglipModel` folder (`config.json` + `*.safetensors`) -> the
settings and parameters of cmjax's `contrastive` model with SigLIP's towers.

  model_config, params = hf_siglip.load("/path/to/siglip-base-patch16-224")

SigLIP's image tower is a `vit` without class token, pooled by its MAP head
(`pool='map'`), tanh-GELU, pixels scaled to [-1, 1]; its embedding is the MAP
head's output (`projection='none'`). The text tower is a bidirectional
`transformer` that attends to its padding (`mask_padding=False`, as trained)
and is pooled at its last position (`pool='end'`), then a linear head with a
bias (`projection='linear_bias'`). The logits have a learned scale and bias.
Texts must be padded to the checkpoint's length (64) with its pad id, as the
tokenizer settings `convert` prints say.
"""

from __future__ import annotations

import json
import os

import numpy as np

from cmjax.pretrained import hf_clip, torch_layout


def model_config(hf: dict) -> dict:
  """`config.model` for a `SiglipConfig` (as read from config.json)."""
  vision, text = hf.get("vision_config", {}), hf.get("text_config", {})
  if not vision.get("vision_use_head", True):
    raise ValueError("vision_config.vision_use_head=False: only SigLIP's MAP-head pooling is known")
  width = int(vision["hidden_size"])
  projection = int(text.get("projection_size") or text["hidden_size"])
  if projection != width:
    raise ValueError(
      f"text_config.projection_size={projection} differs from the image width {width}; "
      "SigLIP's image embedding is its MAP head's output, so they must be equal"
    )
  eps_v, eps_t = (float(c.get("layer_norm_eps", 1e-6)) for c in (vision, text))
  return dict(
    name="contrastive",
    modalities=("image", "text"),
    embed_dim=width,
    image=dict(
      name="vit",
      patch_size=int(vision["patch_size"]),
      **hf_clip.tower_sizes(vision),
      pool="map",
      activation=torch_layout.activation(
        vision.get("hidden_act", "gelu_pytorch_tanh"), "vision_config"
      ),
      ln_epsilon=eps_v,
      pixel_norm="minus_one_one",
    ),
    text=dict(
      name="transformer",
      vocab_size=int(text["vocab_size"]),
      max_len=int(text.get("max_position_embeddings", 64)),
      **hf_clip.tower_sizes(text),
      pool="end",
      mask_padding=False,
      activation=torch_layout.activation(
        text.get("hidden_act", "gelu_pytorch_tanh"), "text_config"
      ),
      ln_epsilon=eps_t,
    ),
    projection=dict(image="none", text="linear_bias"),
  )


def convert(tensors: dict[str, np.ndarray], cfg: dict) -> dict:
  """`SiglipModel` tensors -> the `contrastive` model's parameter tree."""
  t = torch_layout.Tensors(tensors, "the SigLIP checkpoint")
  image, text = cfg["image"], cfg["text"]
  v, w = t.sub("vision_model."), t.sub("text_model.")
  head = v.sub("head.")
  return {
    "image_encoder": {
      "patch_embed": v.patch_conv("embeddings.patch_embedding"),
      "pos_embedding": v.get("embeddings.position_embedding.weight"),
      "transformer": hf_clip.blocks(v, image["depth"], image["num_heads"], "post_layernorm"),
      "map_head": {
        "probe": head.get("probe").reshape(1, -1),
        "attn": head.packed_attention("attention", image["num_heads"]),
        "ln": head.layer_norm("layernorm"),
        "mlp": {"fc1": head.linear("mlp.fc1"), "fc2": head.linear("mlp.fc2")},
      },
    },
    "text_encoder": {
      "token_embed": w.embedding("embeddings.token_embedding"),
      "pos_embedding": w.get("embeddings.position_embedding.weight"),
      "transformer": hf_clip.blocks(w, text["depth"], text["num_heads"], "final_layer_norm"),
    },
    "text_proj": w.linear("head"),
    "logit_scale": np.float32(t.get("logit_scale").reshape(())),
    "logit_bias": np.float32(t.get("logit_bias").reshape(())),
  }


def load(folder: str) -> tuple[dict, dict]:
  """`(config.model, parameter tree)` of a Hugging Face SigLIP folder."""
  with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
    cfg = model_config(json.load(f))
  return cfg, convert(torch_layout.read_safetensors(folder), cfg)
