"""A PyTorch implementation of the image + text contrastive model, for benchmarks.

Written independently of the JAX code, as a PyTorch user would write the same
model: `nn.Linear` with a fused q/k/v projection, `scaled_dot_product_attention`,
`nn.LayerNorm`, tanh-GELU, mean pooling, CLIP loss, then gradient clipping and
fused AdamW. `from_flax` copies a cmjax parameter tree into it, so that
`tests/test_torch_parity.py` can check both give the same loss and the same
update for the same weights and batch.

PyTorch is only needed here (the `bench` extra); nothing in `cmjax` imports it.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MAX_LOGIT_SCALE = math.log(100.0)
LN_EPS = 1e-6  # flax's LayerNorm epsilon (PyTorch's default is 1e-5)


class Block(nn.Module):
  """Pre-LN encoder block: x + Attn(LN(x)), then x + MLP(LN(x))."""

  def __init__(self, width: int, heads: int, mlp: int):
    super().__init__()
    self.heads = heads
    self.ln_attn = nn.LayerNorm(width, eps=LN_EPS)
    self.qkv = nn.Linear(width, 3 * width)
    self.out = nn.Linear(width, width)
    self.ln_mlp = nn.LayerNorm(width, eps=LN_EPS)
    self.fc1 = nn.Linear(width, mlp)
    self.fc2 = nn.Linear(mlp, width)

  def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
    """x: `[batch, tokens, width]`; key_mask: bool `[batch, tokens]` or None."""
    x = x + self.attention(self.ln_attn(x), key_mask)
    return x + self.mlp(self.ln_mlp(x))

  def attention(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Multi-head self-attention (fused q/k/v projection, output projection)."""
    b, n, d = x.shape
    qkv = self.qkv(x).view(b, n, 3, self.heads, d // self.heads)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [batch, heads, tokens, head_dim]
    mask = None if key_mask is None else key_mask[:, None, None, :]
    h = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return self.out(h.transpose(1, 2).reshape(b, n, d))

  def mlp(self, x: torch.Tensor) -> torch.Tensor:
    return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class Encoder(nn.Module):
  """Blocks then a final LayerNorm."""

  def __init__(self, width: int, depth: int, heads: int, mlp: int):
    super().__init__()
    self.blocks = nn.ModuleList(Block(width, heads, mlp) for _ in range(depth))
    self.ln_final = nn.LayerNorm(width, eps=LN_EPS)

  def forward(self, x, key_mask=None):
    for block in self.blocks:
      x = block(x, key_mask)
    return self.ln_final(x)


class ViT(nn.Module):
  """uint8 `[batch, H, W, 3]` -> `[batch, width]` (mean of the patch tokens)."""

  def __init__(
    self,
    image_size: int,
    patch_size: int,
    width: int,
    depth: int,
    num_heads: int,
    mlp_dim: int,
    stem: str = "patch",
    pool: str = "mean",
    **unused,
  ):
    super().__init__()
    if pool != "mean":
      raise ValueError(f"the reference ViT pools by mean only, got pool={pool!r}")
    if stem == "patch":
      self.stem = nn.ModuleList([nn.Conv2d(3, width, patch_size, stride=patch_size)])
    else:  # stride-2 3x3 convolutions, channels doubling up to `width`
      steps = int(math.log2(patch_size))
      channels = [3] + [max(width >> (steps - 1 - i), 8) for i in range(steps)]
      self.stem = nn.ModuleList(
        nn.Conv2d(channels[i], channels[i + 1], 3, stride=2, padding=1) for i in range(steps)
      )
    tokens = (image_size // patch_size) ** 2
    self.pos_embedding = nn.Parameter(torch.zeros(tokens, width))
    self.encoder = Encoder(width, depth, num_heads, mlp_dim)

  def forward(self, image: torch.Tensor) -> torch.Tensor:
    x = self.apply_stem(image.permute(0, 3, 1, 2).float() / 127.5 - 1.0)
    x = x.flatten(2).transpose(1, 2) + self.pos_embedding  # [batch, tokens, width]
    return self.encoder(x).mean(dim=1)

  def apply_stem(self, x: torch.Tensor) -> torch.Tensor:
    """`[batch, 3, H, W]` in [-1, 1] -> `[batch, width, H/p, W/p]`."""
    for i, conv in enumerate(self.stem):
      x = conv(x)
      if i < len(self.stem) - 1:
        x = F.gelu(x, approximate="tanh")
    return x


class TextTransformer(nn.Module):
  """int `[batch, L]` + bool mask -> `[batch, width]` (mean of the real tokens)."""

  def __init__(
    self,
    vocab_size: int,
    max_len: int,
    width: int,
    depth: int,
    num_heads: int,
    mlp_dim: int,
    **unused,
  ):
    super().__init__()
    self.token_embed = nn.Embedding(vocab_size, width)
    self.pos_embedding = nn.Parameter(torch.zeros(max_len, width))
    self.encoder = Encoder(width, depth, num_heads, mlp_dim)

  def forward(self, text: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    x = self.token_embed(text) + self.pos_embedding[: text.shape[1]]
    x = self.encoder(x, mask)
    w = mask.unsqueeze(-1).float()
    return (x * w).sum(1) / w.sum(1).clamp(min=1.0)


def l2_normalize(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
  return x * torch.rsqrt((x * x).sum(-1, keepdim=True).clamp(min=eps * eps))


def clip_loss(x: torch.Tensor, y: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
  """Mean of the x->y and y->x cross entropies of `exp(min(s, log 100)) x y^T`."""
  logits = torch.exp(torch.clamp(logit_scale, max=MAX_LOGIT_SCALE)) * (x @ y.T)
  labels = torch.arange(x.shape[0])
  return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


class ContrastiveModel(nn.Module):
  """Image and text towers, bias-free projections, CLIP loss."""

  def __init__(self, image_size: int, image: dict, text: dict, embed_dim: int):
    super().__init__()
    self.image_encoder = ViT(image_size, **image)
    self.text_encoder = TextTransformer(**text)
    self.image_proj = nn.Linear(image["width"], embed_dim, bias=False)
    self.text_proj = nn.Linear(text["width"], embed_dim, bias=False)
    self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

  def forward(self, batch: dict) -> torch.Tensor:
    """The loss of `batch` ('image', 'text', 'text_mask' tensors)."""
    x = l2_normalize(self.image_proj(self.image_encoder(batch["image"])))
    y = l2_normalize(self.text_proj(self.text_encoder(batch["text"], batch["text_mask"])))
    return clip_loss(x, y, self.logit_scale)


def build(config) -> ContrastiveModel:
  """The reference model of a cmjax image + text config (see `throughput_sizes`)."""
  from cmjax.data import datasets  # pylint: disable=g-import-not-at-top
  from cmjax.models import encoders  # pylint: disable=g-import-not-at-top

  data = datasets.build(config.data).spec
  image = encoders.complete_from_data("image", config.model.image, data)
  text = encoders.complete_from_data("text", config.model.text, data)
  return ContrastiveModel(config.data.image_size, image, text, config.model.embed_dim)


# ---------------------------------------------------------------------------
# Weights from cmjax
# ---------------------------------------------------------------------------


def _t(a) -> torch.Tensor:
  return torch.from_numpy(np.array(a, dtype=np.float32))


def _load_layer_norm(ln: nn.LayerNorm, p: dict) -> None:
  ln.weight.copy_(_t(p["scale"]))
  ln.bias.copy_(_t(p["bias"]))


def _load_dense(linear: nn.Linear, p: dict) -> None:
  linear.weight.copy_(_t(p["kernel"]).T)
  if linear.bias is not None:
    linear.bias.copy_(_t(p["bias"]))


def _load_encoder(enc: Encoder, p: dict) -> None:
  for i, block in enumerate(enc.blocks):
    b = p[f"block{i}"]
    attn = b["attn"]
    _load_layer_norm(block.ln_attn, b["ln_attn"])
    _load_layer_norm(block.ln_mlp, b["ln_mlp"])
    # q/k/v kernels [in, heads, head_dim] -> rows of one [3 * width, in] weight.
    block.qkv.weight.copy_(
      torch.cat([_t(attn[n]["kernel"]).flatten(1).T for n in ("query", "key", "value")])
    )
    block.qkv.bias.copy_(
      torch.cat([_t(attn[n]["bias"]).flatten() for n in ("query", "key", "value")])
    )
    block.out.weight.copy_(_t(attn["out"]["kernel"]).flatten(0, 1).T)
    block.out.bias.copy_(_t(attn["out"]["bias"]))
    _load_dense(block.fc1, b["mlp"]["fc1"])
    _load_dense(block.fc2, b["mlp"]["fc2"])
  _load_layer_norm(enc.ln_final, p["ln_final"])


@torch.no_grad()
def from_flax(model: ContrastiveModel, params: dict) -> ContrastiveModel:
  """Copies the cmjax parameters `params` (unboxed) into `model`; returns it."""
  img = params["image_encoder"]
  if len(model.image_encoder.stem) == 1 and "patch_embed" in img:
    convs = [img["patch_embed"]]
  else:
    convs = [img[f"stem_conv{i}"] for i in range(len(model.image_encoder.stem))]
  for conv, p in zip(model.image_encoder.stem, convs):
    conv.weight.copy_(_t(p["kernel"]).permute(3, 2, 0, 1))  # HWIO -> OIHW
    conv.bias.copy_(_t(p["bias"]))
  model.image_encoder.pos_embedding.copy_(_t(img["pos_embedding"]))
  _load_encoder(model.image_encoder.encoder, img["transformer"])
  txt = params["text_encoder"]
  model.text_encoder.token_embed.weight.copy_(_t(txt["token_embed"]["embedding"]))
  model.text_encoder.pos_embedding.copy_(_t(txt["pos_embedding"]))
  _load_encoder(model.text_encoder.encoder, txt["transformer"])
  _load_dense(model.image_proj, params["image_proj"])
  _load_dense(model.text_proj, params["text_proj"])
  model.logit_scale.copy_(_t(params["logit_scale"]))
  return model


def to_torch_batch(batch: dict) -> dict:
  return {
    "image": torch.from_numpy(np.asarray(batch["image"])),
    "text": torch.from_numpy(np.asarray(batch["text"]).astype(np.int64)),
    "text_mask": torch.from_numpy(np.asarray(batch["text_mask"])),
  }


# ---------------------------------------------------------------------------
# Train step
# ---------------------------------------------------------------------------


class TrainStep:
  """Forward, backward, global-norm clipping and AdamW, as cmjax's optimizer.

  Weight decay applies to matrices only (as cmjax's mask); the learning rate of
  step i is `lr_at(i)` (pass cmjax's schedule to match it exactly).
  """

  def __init__(self, model: nn.Module, optim, lr_at: Callable[[int], float]):
    self.model = model
    params = list(model.parameters())
    groups = [
      {
        "params": [p for p in params if p.ndim >= 2],
        "weight_decay": optim.get("weight_decay", 0.0),
      },
      {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    self.opt = torch.optim.AdamW(
      groups, lr=0.0, betas=(optim.get("b1", 0.9), optim.get("b2", 0.999)), eps=1e-8, fused=True
    )
    self.clip = optim.get("grad_clip_norm")
    self.lr_at = lr_at
    self.step_count = 0

  def __call__(self, batch: dict) -> torch.Tensor:
    lr = self.lr_at(self.step_count)
    for g in self.opt.param_groups:
      g["lr"] = lr
    self.opt.zero_grad(set_to_none=True)
    loss = self.model(batch)
    loss.backward()
    if self.clip:
      nn.utils.clip_grad_norm_(self.model.parameters(), self.clip, foreach=True)
    self.opt.step()
    self.step_count += 1
    return loss.detach()


def schedule_values(schedule, steps: int) -> Sequence[float]:
  """cmjax's learning-rate schedule as plain floats (no JAX calls in the torch loop)."""
  return [float(v) for v in np.asarray(schedule(np.arange(steps)))]
