"""A big_vision two-towers checkpoint (`.npz`, as SigLIP's are released) ->
the settings and parameters of cmjax's `contrastive` model.

  model_config, params = big_vision_npz.load("webli_en_b16_224.npz")

big_vision's parameters are flax's already (kernels `[in, out]`, attention
`[width, heads, head_dim]`), so the import renames and reshapes: `img/...`
(a ViT pooled by its MAP head, 'map', or by the mean of its tokens, 'gap') to
`image_encoder/...`, `txt/...` (a bidirectional text Transformer pooled at its
last position) to `text_encoder/...`, the towers' `head` Dense layers to the
projections, `t` and `b` to the logit scale and bias. Sizes, heads included,
are read from the shapes; blocks saved stacked (`scan=True`) are unstacked.
"""

from __future__ import annotations

import os

import numpy as np


class _Flat:
  """The npz's arrays by name (a leading 'params/' dropped), float32."""

  def __init__(self, arrays: dict[str, np.ndarray], source: str):
    self.arrays = {k.removeprefix("params/"): v for k, v in arrays.items()}
    self.source = source

  def has(self, name: str) -> bool:
    return name in self.arrays

  def get(self, name: str) -> np.ndarray:
    if name not in self.arrays:
      close = sorted(k for k in self.arrays if k.split("/")[0] == name.split("/")[0])[:5]
      raise KeyError(f"{self.source} has no array {name!r} (e.g. {close})")
    return np.asarray(self.arrays[name], np.float32)

  def tree(self, prefix: str) -> dict:
    """Everything under `prefix/` as a nested dict."""
    out: dict = {}
    for key in self.arrays:
      if key.startswith(prefix + "/"):
        node = out
        *parents, leaf = key[len(prefix) + 1 :].split("/")
        for p in parents:
          node = node.setdefault(p, {})
        node[leaf] = self.get(key)
    return out


def _blocks(f: _Flat, encoder: str) -> list[dict]:
  """The encoder blocks as big_vision names them, unstacked if scanned."""
  if f.has(f"{encoder}/encoderblock/LayerNorm_0/scale"):
    stacked = f.tree(f"{encoder}/encoderblock")
    depth = stacked["LayerNorm_0"]["scale"].shape[0]
    import jax  # pylint: disable=g-import-not-at-top

    return [jax.tree_util.tree_map(lambda x, i=i: x[i], stacked) for i in range(depth)]
  blocks, i = [], 0
  while f.has(f"{encoder}/encoderblock_{i}/LayerNorm_0/scale"):
    blocks.append(f.tree(f"{encoder}/encoderblock_{i}"))
    i += 1
  if not blocks:
    raise ValueError(f"{f.source} has no {encoder}/encoderblock_0 (not a big_vision Transformer)")
  return blocks


def _block(b: dict) -> dict:
  return {
    "ln_attn": b["LayerNorm_0"],
    "attn": b["MultiHeadDotProductAttention_0"],
    "ln_mlp": b["LayerNorm_1"],
    "mlp": {"fc1": b["MlpBlock_0"]["Dense_0"], "fc2": b["MlpBlock_0"]["Dense_1"]},
  }


def _sizes(blocks: list[dict]) -> dict:
  query = blocks[0]["MultiHeadDotProductAttention_0"]["query"]["kernel"]
  return dict(
    width=int(query.shape[0]),
    depth=len(blocks),
    num_heads=int(query.shape[1]),
    mlp_dim=int(blocks[0]["MlpBlock_0"]["Dense_0"]["kernel"].shape[1]),
  )


def load_arrays(f: _Flat) -> tuple[dict, dict]:
  """`(config.model, parameter tree)` of a big_vision two-towers param set."""
  img_blocks, txt_blocks = _blocks(f, "img/Transformer"), _blocks(f, "txt/Encoder_0")
  pool = "map" if f.has("img/MAPHead_0/probe") else "mean"
  if f.has("img/cls"):
    raise ValueError(
      f"{f.source}: an image tower with a class token ('tok' pooling) adds its position "
      "embedding before the token, unlike cmjax's ViT; only 'map' and 'gap' towers are known"
    )
  image_sizes, text_sizes = _sizes(img_blocks), _sizes(txt_blocks)
  embedding = f.get("img/embedding/kernel")
  image_encoder = {
    "patch_embed": {"kernel": embedding, "bias": f.get("img/embedding/bias")},
    "pos_embedding": f.get("img/pos_embedding").reshape(-1, image_sizes["width"]),
    "transformer": {
      **{f"block{i}": _block(b) for i, b in enumerate(img_blocks)},
      "ln_final": f.tree("img/Transformer/encoder_norm"),
    },
  }
  if pool == "map":
    head = f.tree("img/MAPHead_0")
    image_encoder["map_head"] = {
      "probe": head["probe"].reshape(1, -1),
      "attn": head["MultiHeadDotProductAttention_0"],
      "ln": head["LayerNorm_0"],
      "mlp": {"fc1": head["MlpBlock_0"]["Dense_0"], "fc2": head["MlpBlock_0"]["Dense_1"]},
    }
  params = {
    "image_encoder": image_encoder,
    "text_encoder": {
      "token_embed": {"embedding": f.get("txt/Embed_0/embedding")},
      "pos_embedding": f.get("txt/pos_embedding").reshape(-1, text_sizes["width"]),
      "transformer": {
        **{f"block{i}": _block(b) for i, b in enumerate(txt_blocks)},
        "ln_final": f.tree("txt/Encoder_0/encoder_norm"),
      },
    },
    "logit_scale": np.float32(f.get("t").reshape(())),
    "logit_bias": np.float32(f.get("b").reshape(()) if f.has("b") else 0.0),
  }
  projection, dims = {}, {}
  for m, tower in (("image", "img"), ("text", "txt")):
    if f.has(f"{tower}/head/kernel"):
      params[f"{m}_proj"] = f.tree(f"{tower}/head")
      projection[m] = "linear_bias"
      dims[m] = params[f"{m}_proj"]["kernel"].shape[1]
    else:
      projection[m] = "none"
      dims[m] = (image_sizes if m == "image" else text_sizes)["width"]
  if dims["image"] != dims["text"]:
    raise ValueError(f"{f.source}: the towers' embeddings differ in size ({dims})")
  config = dict(
    name="contrastive",
    modalities=("image", "text"),
    embed_dim=int(dims["image"]),
    image=dict(
      name="vit",
      patch_size=int(embedding.shape[0]),
      **image_sizes,
      pool=pool,
      pixel_norm="minus_one_one",
    ),
    text=dict(
      name="transformer",
      vocab_size=int(params["text_encoder"]["token_embed"]["embedding"].shape[0]),
      max_len=int(params["text_encoder"]["pos_embedding"].shape[0]),
      **text_sizes,
      pool="end",
      mask_padding=False,
    ),
    projection=projection,
  )
  return config, params


def load(path: str) -> tuple[dict, dict]:
  """`(config.model, parameter tree)` of a big_vision `.npz` checkpoint."""
  path = os.path.expanduser(path)
  with np.load(path, allow_pickle=False) as npz:
    arrays = {k: npz[k] for k in npz.files}
  return load_arrays(_Flat(arrays, path))
