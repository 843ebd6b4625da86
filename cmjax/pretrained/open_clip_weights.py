"""An open_clip / OpenAI CLIP state dict (ViT image tower) -> the settings and
parameters of cmjax's `contrastive` model.

  model_config, params = open_clip_weights.load("open_clip_model.safetensors")

The layout is OpenAI's (`visual.conv1`, `visual.transformer.resblocks.{i}`,
packed `attn.in_proj_weight`, `mlp.c_fc` / `c_proj`, `visual.proj` and
`text_projection` applied as `x @ P`), which open_clip keeps. The sizes are
read from the shapes; what the tensors do not record is an argument:

  activation   'quick_gelu' for OpenAI's weights and open_clip's `-quickgelu`
               models, 'gelu' (exact) for the others.
  head_width   width per attention head (64 in every released model).

Files: `.safetensors` (open_clip ships `open_clip_model.safetensors` beside
its `.bin`); a PyTorch pickle (`.pt`, `.bin`) is not read, because that needs
PyTorch: save it once with `safetensors.torch.save_file(torch.load(f), out)`.
The text tower is causal and pooled at its last real token, where CLIP's
tokenizer puts the end-of-text token (open_clip takes the position of the
largest id, the same token).
"""

from __future__ import annotations

import os

import numpy as np

from cmjax.pretrained import torch_layout


def _depth(tensors, prefix: str) -> int:
  n = 0
  while f"{prefix}resblocks.{n}.ln_1.weight" in tensors:
    n += 1
  if not n:
    raise ValueError(f"the state dict has no {prefix}resblocks.0 (not a CLIP ViT / text tower)")
  return n


def _tower(t: torch_layout.Tensors, depth: int, heads: int) -> dict:
  """`resblocks.{i}` -> a cmjax `Transformer`'s blocks (its ln_final added by the caller)."""
  params = {}
  for i in range(depth):
    p = f"resblocks.{i}."
    params[f"block{i}"] = {
      "ln_attn": t.layer_norm(p + "ln_1"),
      "attn": t.packed_attention(p + "attn", heads),
      "ln_mlp": t.layer_norm(p + "ln_2"),
      "mlp": {"fc1": t.linear(p + "mlp.c_fc"), "fc2": t.linear(p + "mlp.c_proj")},
    }
  return params


def _heads(width: int, head_width: int, where: str) -> int:
  if width % head_width:
    raise ValueError(f"{where} width {width} is not a multiple of head_width={head_width}")
  return width // head_width


def model_config(tensors, activation: str = "quick_gelu", head_width: int = 64) -> dict:
  """`config.model` read from the state dict's shapes."""
  if "visual.conv1.weight" not in tensors:
    raise ValueError(
      "the state dict has no visual.conv1.weight: only CLIP ViT image towers are known "
      "(not the ModifiedResNet ones, RN50 etc.)"
    )
  if activation not in ("quick_gelu", "gelu"):
    raise ValueError(f"activation={activation!r}; expected 'quick_gelu' or 'gelu'")
  conv = tensors["visual.conv1.weight"]
  width, patch = int(conv.shape[0]), int(conv.shape[2])
  vocab, text_width = (int(n) for n in tensors["token_embedding.weight"].shape)
  v_depth, t_depth = _depth(tensors, "visual.transformer."), _depth(tensors, "transformer.")
  return dict(
    name="contrastive",
    modalities=("image", "text"),
    embed_dim=int(tensors["text_projection"].shape[1]),
    image=dict(
      name="vit",
      patch_size=patch,
      width=width,
      depth=v_depth,
      num_heads=_heads(width, head_width, "image tower"),
      mlp_dim=int(tensors["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0]),
      pool="cls",
      ln_pre=True,
      activation=activation,
      ln_epsilon=1e-5,
      pixel_norm="clip",
    ),
    text=dict(
      name="transformer",
      vocab_size=vocab,
      max_len=int(tensors["positional_embedding"].shape[0]),
      width=text_width,
      depth=t_depth,
      num_heads=_heads(text_width, head_width, "text tower"),
      mlp_dim=int(tensors["transformer.resblocks.0.mlp.c_fc.weight"].shape[0]),
      causal=True,
      pool="last",
      activation=activation,
      ln_epsilon=1e-5,
    ),
    logit_scale_init=float(np.asarray(tensors["logit_scale"]).reshape(())),
  )


def convert(tensors, cfg: dict) -> dict:
  """State-dict tensors -> the `contrastive` model's parameter tree."""
  t = torch_layout.Tensors(tensors, "the open_clip state dict")
  v = t.sub("visual.")
  image, text = cfg["image"], cfg["text"]
  vision = _tower(v.sub("transformer."), image["depth"], image["num_heads"])
  vision["ln_final"] = v.layer_norm("ln_post")  # on the class token: the same pooled vector
  words = _tower(t.sub("transformer."), text["depth"], text["num_heads"])
  words["ln_final"] = t.layer_norm("ln_final")
  return {
    "image_encoder": {
      "patch_embed": v.patch_conv("conv1"),
      "cls": v.get("class_embedding"),
      "pos_embedding": v.get("positional_embedding"),
      "ln_pre": v.layer_norm("ln_pre"),
      "transformer": vision,
    },
    "text_encoder": {
      "token_embed": t.embedding("token_embedding"),
      "pos_embedding": t.get("positional_embedding"),
      "transformer": words,
    },
    # OpenAI keeps these as `x @ P`: already the flax kernel layout.
    "image_proj": {"kernel": v.get("proj")},
    "text_proj": {"kernel": t.get("text_projection")},
    "logit_scale": np.float32(t.get("logit_scale").reshape(())),
    "logit_bias": np.float32(0.0),
  }


def read(path: str) -> dict[str, np.ndarray]:
  """The tensors of a `.safetensors` state dict (a leading `module.` dropped)."""
  if not path.endswith(".safetensors"):
    raise ValueError(
      f"{path}: only .safetensors state dicts are read (no PyTorch at run time); convert a "
      ".pt / .bin once with safetensors.torch.save_file(torch.load(path), 'model.safetensors')"
    )
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top

  tensors = load_file(path)
  return {k.removeprefix("module."): v for k, v in tensors.items()}


def load(path: str, activation: str = "quick_gelu", head_width: int = 64) -> tuple[dict, dict]:
  """`(config.model, parameter tree)` of an open_clip / OpenAI CLIP state dict."""
  tensors = read(os.path.expanduser(path))
  cfg = model_config(tensors, activation, head_width)
  return cfg, convert(tensors, cfg)


def example_state_dict(
  *,
  image_size: int = 32,
  patch_size: int = 8,
  width: int = 32,
  text_width: int = 32,
  depth: int = 2,
  vocab_size: int = 260,
  context_length: int = 16,
  embed_dim: int = 32,
  seed: int = 0,
) -> dict[str, np.ndarray]:
  """A random state dict in this layout (heads of width 16, MLPs 4x wide):
  for trying the import route without downloading weights. Its towers compute
  nothing meaningful."""
  rng = np.random.default_rng(seed)

  def normal(*shape, scale=0.02):
    return (scale * rng.normal(size=shape)).astype(np.float32)

  def blocks(prefix, w):
    out = {}
    for i in range(depth):
      p = f"{prefix}resblocks.{i}."
      out.update(
        {
          p + "ln_1.weight": 1 + normal(w, scale=0.1),
          p + "ln_1.bias": normal(w),
          p + "attn.in_proj_weight": normal(3 * w, w),
          p + "attn.in_proj_bias": normal(3 * w),
          p + "attn.out_proj.weight": normal(w, w),
          p + "attn.out_proj.bias": normal(w),
          p + "ln_2.weight": 1 + normal(w, scale=0.1),
          p + "ln_2.bias": normal(w),
          p + "mlp.c_fc.weight": normal(4 * w, w),
          p + "mlp.c_fc.bias": normal(4 * w),
          p + "mlp.c_proj.weight": normal(w, 4 * w),
          p + "mlp.c_proj.bias": normal(w),
        }
      )
    return out

  grid = (image_size // patch_size) ** 2
  return {
    "visual.conv1.weight": normal(width, 3, patch_size, patch_size),
    "visual.class_embedding": normal(width),
    "visual.positional_embedding": normal(grid + 1, width),
    "visual.ln_pre.weight": np.ones(width, np.float32),
    "visual.ln_pre.bias": np.zeros(width, np.float32),
    **blocks("visual.transformer.", width),
    "visual.ln_post.weight": np.ones(width, np.float32),
    "visual.ln_post.bias": np.zeros(width, np.float32),
    "visual.proj": normal(width, embed_dim, scale=width**-0.5),
    "token_embedding.weight": normal(vocab_size, text_width),
    "positional_embedding": normal(context_length, text_width, scale=0.01),
    **blocks("transformer.", text_width),
    "ln_final.weight": np.ones(text_width, np.float32),
    "ln_final.bias": np.zeros(text_width, np.float32),
    "text_projection": normal(text_width, embed_dim, scale=text_width**-0.5),
    "logit_scale": np.asarray(np.log(1 / 0.07), np.float32),
  }
