"""Vision Transformer: image `[batch, H, W, 3]` -> tokens and pooled vector."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from cmjax.models.encoders import EncoderOutput, register_encoder
from cmjax.models.layers import Dtype, conv, conv_as_matmul, layer_norm, patch_embed
from cmjax.models.map_head import MAPHead
from cmjax.models.pixels import to_float
from cmjax.models.transformer import Transformer


@register_encoder("image", "vit")
class ViT(nn.Module):
  """ViT encoder.

  Attributes:
    patch_size: square patch side in pixels (H and W must be multiples).
    width, depth, num_heads, mlp_dim: Transformer sizes.
    pool: 'mean' (mean of patch tokens), 'cls' (a learned prepended token) or
      'map' (multihead attention pooling with a learned probe, `MAPHead`).
    stem: 'patch' (one linear map per patch, as in ViT) or 'conv' (stride-2
      3x3 convolutions down to the patch grid, as in "Early convolutions help
      transformers see better"; patch_size must then be a power of two). The
      conv stem learns small shapes from far fewer examples for little compute.
    dropout_rate: dropout inside the Transformer.
    dtype: compute dtype.
    pixel_norm: how uint8 pixels become floats (`cmjax.models.pixels`).
    activation: the MLPs' (`layers.ACTIVATIONS`): 'gelu_tanh' (ViT, SigLIP),
      'quick_gelu' (OpenAI CLIP).
    ln_epsilon: every LayerNorm's epsilon (1e-6; CLIP's weights 1e-5).
    ln_pre: a LayerNorm on the embedded tokens before the first block (CLIP).

  CLIP's image tower is `pool='cls', ln_pre=True, activation='quick_gelu',
  ln_epsilon=1e-5, pixel_norm='clip'`; SigLIP's is `pool='map'` with the
  defaults (`cmjax.pretrained` writes these settings for imported weights).
  """

  patch_size: int = 8
  width: int = 128
  depth: int = 2
  num_heads: int = 4
  mlp_dim: int = 256
  pool: str = "mean"
  stem: str = "patch"
  dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32
  remat: bool | str = False  # transformer.remat_block: False, 'full' or 'dots'
  pixel_norm: str | tuple = "minus_one_one"
  activation: str = "gelu_tanh"
  ln_epsilon: float = 1e-6
  ln_pre: bool = False

  @nn.compact
  def __call__(self, image: jax.Array, *, train: bool = False) -> EncoderOutput:
    """image: uint8 `[batch, H, W, 3]` (or float in [0, 1]).

    Returns EncoderOutput(tokens `[batch, n, width]`, pooled `[batch, width]`) with
    n = (H/p)(W/p), plus one for 'cls' pooling, and an all-True mask `[batch, n]`.
    """
    chex.assert_rank(image, 4)
    batch, h, w, c = image.shape
    p = self.patch_size
    if h % p or w % p:
      raise ValueError(f"image size {h}x{w} is not a multiple of patch_size {p}")
    if self.pool not in ("mean", "cls", "map"):
      raise ValueError(f"pool must be 'mean', 'cls' or 'map', got {self.pool!r}")
    if self.stem not in ("patch", "conv"):
      raise ValueError(f"stem must be 'patch' or 'conv', got {self.stem!r}")
    x = to_float(image, self.pixel_norm).astype(self.dtype)
    if self.stem == "conv":
      x = self._conv_stem(x)
    else:
      x = patch_embed(self.width, (p, p), "patch_embed", self.dtype)(x)
    n = (h // p) * (w // p)
    x = x.reshape(batch, n, self.width)
    if self.pool == "cls":
      cls = self.param(
        "cls", nn.with_logical_partitioning(nn.initializers.zeros_init(), ("embed",)), (self.width,)
      )
      x = jnp.concatenate(
        [jnp.broadcast_to(cls.astype(self.dtype), (batch, 1, self.width)), x], axis=1
      )
    pos = self.param(
      "pos_embedding",
      nn.with_logical_partitioning(nn.initializers.normal(0.02), ("pos", "embed")),
      (x.shape[1], self.width),
    )
    x = x + pos.astype(self.dtype)[None]
    if self.ln_pre:
      x = layer_norm("ln_pre", self.dtype, epsilon=self.ln_epsilon)(x)
    x = Transformer(
      self.depth,
      self.num_heads,
      self.mlp_dim,
      self.dropout_rate,
      self.dtype,
      remat=self.remat,
      activation=self.activation,
      ln_epsilon=self.ln_epsilon,
      name="transformer",
    )(x, deterministic=not train)
    if self.pool == "cls":
      pooled = x[:, 0]
    elif self.pool == "map":
      pooled = MAPHead(
        self.num_heads,
        self.mlp_dim,
        self.dtype,
        self.activation,
        self.ln_epsilon,
        name="map_head",
      )(x)
    else:
      pooled = jnp.mean(x, axis=1)
    chex.assert_shape(x, (batch, n + (self.pool == "cls"), self.width))
    chex.assert_shape(pooled, (batch, self.width))
    return EncoderOutput(x, pooled, jnp.ones(x.shape[:2], jnp.bool_))

  def _conv_stem(self, x: jax.Array) -> jax.Array:
    """`[batch, H, W, 3]` -> `[batch, H/p, W/p, width]` by log2(p) stride-2 convs.

    Channels double from width / 2**(log2(p)) up to width.
    """
    p = self.patch_size
    steps = p.bit_length() - 1
    if p < 2 or 2**steps != p:
      raise ValueError(f"stem='conv' needs a power-of-two patch_size, got {p}")
    for i in range(steps):
      features = max(self.width >> (steps - 1 - i), 8)
      last = i == steps - 1
      # Only the last conv's output is the token width, sharded as 'embed'.
      x = conv(
        features,
        (3, 3),
        (2, 2),
        ((1, 1), (1, 1)),
        f"stem_conv{i}",
        self.dtype,
        (None, None, "conv_in", "embed" if last else None),
        conv_general_dilated=conv_as_matmul,
      )(x)
      if not last:
        x = nn.gelu(x)
    return x
