"""Reading PyTorch-layout tensors (`nn.Linear`, `nn.LayerNorm`, `nn.Conv2d`,
`nn.MultiheadAttention`) as the parameters of cmjax's flax layers.

torch keeps a linear map as `weight [out, in]` and computes `x @ W.T`; flax keeps
`kernel [in, out]`. Attention projections are split into heads as
`MultiHeadAttention` stores them (`[in, heads, head_dim]`, out `[heads,
head_dim, out]`). Every read is float32 and names the checkpoint and the close
names when a tensor is missing.
"""

from __future__ import annotations

import difflib
import os
from typing import Mapping

import numpy as np


class Tensors:
  """Named arrays of one checkpoint, read in flax layouts."""

  def __init__(self, tensors: Mapping[str, np.ndarray], source: str, prefix: str = ""):
    self.tensors, self.source, self.prefix = tensors, source, prefix

  def sub(self, prefix: str) -> "Tensors":
    """The same tensors, with names read under `prefix` ('vision_model.')."""
    return Tensors(self.tensors, self.source, self.prefix + prefix)

  def has(self, name: str) -> bool:
    return self.prefix + name in self.tensors

  def get(self, name: str) -> np.ndarray:
    key = self.prefix + name
    if key not in self.tensors:
      close = difflib.get_close_matches(key, list(self.tensors), n=3)
      raise KeyError(f"{self.source} has no tensor {key!r} (close: {close})")
    return np.asarray(self.tensors[key], np.float32)

  def linear(self, name: str, bias: bool = True) -> dict:
    out = {"kernel": self.get(f"{name}.weight").T}
    if bias:
      out["bias"] = self.get(f"{name}.bias")
    return out

  def layer_norm(self, name: str) -> dict:
    return {"scale": self.get(f"{name}.weight"), "bias": self.get(f"{name}.bias")}

  def embedding(self, name: str) -> dict:
    return {"embedding": self.get(f"{name}.weight")}

  def patch_conv(self, name: str) -> dict:
    """`Conv2d` weight `[out, in, kh, kw]` -> `kernel [kh, kw, in, out]`; a
    missing bias (CLIP's) is zero, which computes the same."""
    kernel = self.get(f"{name}.weight").transpose(2, 3, 1, 0)
    has_bias = self.has(f"{name}.bias")
    bias = self.get(f"{name}.bias") if has_bias else np.zeros(kernel.shape[-1], np.float32)
    return {"kernel": kernel, "bias": bias}

  def attention(self, q: str, k: str, v: str, out: str, heads: int) -> dict:
    """Separate q/k/v/out `Linear`s -> `MultiHeadAttention` params."""
    return split_attention(
      [self.get(f"{n}.weight") for n in (q, k, v)],
      [self.get(f"{n}.bias") for n in (q, k, v)],
      self.get(f"{out}.weight"),
      self.get(f"{out}.bias"),
      heads,
    )

  def packed_attention(self, name: str, heads: int, out: str = "out_proj") -> dict:
    """`nn.MultiheadAttention` (`in_proj_weight [3 dim, dim]`) -> `MultiHeadAttention` params."""
    weight, bias = self.get(f"{name}.in_proj_weight"), self.get(f"{name}.in_proj_bias")
    return split_attention(
      np.split(weight, 3),
      np.split(bias, 3),
      self.get(f"{name}.{out}.weight"),
      self.get(f"{name}.{out}.bias"),
      heads,
    )


def split_attention(qkv_weights, qkv_biases, out_weight, out_bias, heads: int) -> dict:
  """torch `[out, in]` projections -> `query/key/value kernel [in, heads, head_dim]`,
  `out kernel [heads, head_dim, out]`."""
  width = qkv_weights[0].shape[0]
  if width % heads:
    raise ValueError(f"attention width {width} is not divisible by {heads} heads")
  head_dim = width // heads
  params = {
    name: {"kernel": w.T.reshape(-1, heads, head_dim), "bias": b.reshape(heads, head_dim)}
    for name, w, b in zip(("query", "key", "value"), qkv_weights, qkv_biases)
  }
  params["out"] = {"kernel": out_weight.T.reshape(heads, head_dim, -1), "bias": out_bias}
  return params


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


# Hugging Face `hidden_act` -> `cmjax.models.layers.ACTIVATIONS`.
HF_ACTIVATIONS = {
  "quick_gelu": "quick_gelu",
  "gelu": "gelu",
  "gelu_pytorch_tanh": "gelu_tanh",
  "gelu_new": "gelu_tanh",
  "relu": "relu",
}


def activation(hf_name: str, where: str) -> str:
  if hf_name not in HF_ACTIVATIONS:
    raise ValueError(f"{where}: hidden_act={hf_name!r} is not one of {sorted(HF_ACTIVATIONS)}")
  return HF_ACTIVATIONS[hf_name]
