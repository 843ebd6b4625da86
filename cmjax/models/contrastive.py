"""Per-modality towers projected into one L2-normalised embedding space.

Each tower is any encoder of the registry (`cmjax.models.encoders`), chosen by
the 'name' in its config entry: `image=dict(name='resnet', ...)`.
"""

import math
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from cmjax.data.spec import ElementSpec
from cmjax.models.encoders import MODALITY_INPUTS, build_encoder, complete_from_data
from cmjax.models.layers import Dtype
from cmjax.models.registry import input_modalities, register

# Batch keys each modality needs; the first one says the modality is present.
MODALITY_KEYS = MODALITY_INPUTS
# Kinds of `projection` (see TriModalContrastive).
PROJECTIONS = ("linear", "linear_bias", "none")


def l2_normalize(x: jax.Array, eps: float = 1e-6) -> jax.Array:
  """Unit-norm rows, float32: `[batch, dim]` -> `[batch, dim]`."""
  x = x.astype(jnp.float32)
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, -1, keepdims=True), eps * eps))


def _check_rank(key: str, x: Any, rank: int, what: str) -> None:
  if x.ndim != rank:
    raise ValueError(f"batch[{key!r}] must have rank {rank} ({what}), got shape {tuple(x.shape)}")


def validate_batch(batch: dict, modalities: tuple[str, ...]) -> tuple[str, ...]:
  """Returns the modalities of `modalities` present in `batch`, checking keys.

  Raises KeyError when a present modality lacks a required key (e.g. 'text'
  without 'text_mask') and ValueError on wrong ranks/shapes or when no
  modality is present.
  """
  present = []
  for m in modalities:
    keys = MODALITY_KEYS[m]
    if keys[0] not in batch:
      continue
    missing = [k for k in keys if k not in batch]
    if missing:
      raise KeyError(
        f"batch has {keys[0]!r} but lacks {missing}; the {m} modality needs keys {list(keys)}"
      )
    present.append(m)
  if not present:
    raise ValueError(
      f"batch has none of the model modalities {list(modalities)}; "
      f"expected keys such as {[MODALITY_KEYS[m][0] for m in modalities]}, "
      f"got keys {sorted(batch)}"
    )
  for m, layout in (("image", "[batch, H, W, 3]"), ("video", "[batch, frames, H, W, 3]")):
    if m in present:
      x = batch[m]
      _check_rank(m, x, layout.count(",") + 1, layout)
      if x.shape[-1] != 3:
        raise ValueError(
          f"batch['{m}'] must have 3 channels (RGB, {layout}), got shape {tuple(x.shape)}"
        )
  for m, what in (("text", "token ids"), ("audio", "waveform samples")):
    if m in present:
      x, mask = batch[m], batch[f"{m}_mask"]
      _check_rank(m, x, 2, f"[batch, {what}]")
      if tuple(mask.shape) != tuple(x.shape):
        raise ValueError(
          f"batch['{m}_mask'] must have the shape of batch['{m}'] "
          f"{tuple(x.shape)}, got {tuple(mask.shape)}"
        )
  return tuple(present)


@register("contrastive")
@register("tri_contrastive")
class TriModalContrastive(nn.Module):
  """CLIP/SigLIP-style model over any of image, text, audio and video.

  Attributes:
    embed_dim: size D of the shared embedding space.
    image, text, audio, video: encoder configs: 'name' (see
      `encoders.known_encoders()`; default ViT, Transformer, Transformer,
      FrameTransformer) plus the encoder's keyword arguments.
    modalities: towers this model has (default: every modality of `data`).
    data: the dataset's `ElementSpec`; completes the encoders' settings
      (vocabulary size, text length, sample rate) and the default modalities.
    logit_scale_init: initial log inverse temperature (log(1/0.07) for CLIP,
      log(10) for SigLIP).
    logit_bias_init: initial logit bias (0 for CLIP, -10 for SigLIP).
    dtype: compute dtype of the towers; embeddings are returned in float32.
    projection: how each modality's pooled vector becomes its embedding,
      `{modality: kind}`, 'linear' for modalities not named: 'linear' (a
      bias-free `[width, embed_dim]` map, as CLIP), 'linear_bias' (with a bias,
      as SigLIP's text head) or 'none' (the pooled vector itself, as SigLIP's
      image tower; its width must be embed_dim).
    normalize: L2-normalise the embeddings (contrastive losses want unit
      vectors); False returns the projections as they are, as objectives with
      per-dimension batch statistics (VICReg, Barlow Twins) want. Evaluators
      compare embeddings by cosine either way.
  """

  embed_dim: int = 128
  image: dict | None = None
  text: dict | None = None
  audio: dict | None = None
  video: dict | None = None
  modalities: tuple[str, ...] | None = None
  data: ElementSpec | None = None
  logit_scale_init: float = math.log(1 / 0.07)
  logit_bias_init: float = 0.0
  dtype: Dtype = jnp.float32
  projection: dict | None = None
  normalize: bool = True

  def setup(self):
    self.used = input_modalities(self)
    unknown = set(self.used) - set(MODALITY_KEYS)
    if unknown:
      raise ValueError(f"unknown modalities {sorted(unknown)}; supported: {sorted(MODALITY_KEYS)}")
    self.towers = {
      m: build_encoder(
        m, complete_from_data(m, getattr(self, m), self.data), dtype=self.dtype, name=f"{m}_encoder"
      )
      for m in self.used
    }
    kinds = dict(self.projection or {})
    unknown = {m: k for m, k in kinds.items() if k not in PROJECTIONS or m not in MODALITY_KEYS}
    if unknown:
      raise ValueError(
        f"config.model.projection={kinds}: {unknown} is not a modality mapped to one of "
        f"{PROJECTIONS}"
      )
    # Bias-free by default so that the zero vector stays meaningless.
    self.projections = {
      m: nn.Dense(
        self.embed_dim,
        use_bias=kinds.get(m) == "linear_bias",
        dtype=self.dtype,
        name=f"{m}_proj",
        kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), ("embed", None)),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), (None,)),
      )
      for m in self.used
      if kinds.get(m, "linear") != "none"
    }
    self.logit_scale = self.param(
      "logit_scale", nn.initializers.constant(self.logit_scale_init), ()
    )
    self.logit_bias = self.param("logit_bias", nn.initializers.constant(self.logit_bias_init), ())

  def _check_source(self, source: str, what: str) -> None:
    """For models that read a tower's tokens (`source`) and emit text: that
    tower exists and is not the text's, and the data have a vocabulary."""
    if source not in self.used or source == "text":
      raise ValueError(
        f"config.model.source={source!r} must be one of the model's non-text "
        f"modalities {[m for m in self.used if m != 'text']}"
      )
    if self.data is None or not self.data.vocab_size:
      raise ValueError(f"the {what} needs data with text (a tokenizer's vocab_size)")

  def _embed(self, modality: str, *inputs, train: bool) -> jax.Array:
    return self._project(modality, self._encode(modality, *inputs, train=train).pooled)

  def _encode(self, modality: str, *inputs, train: bool):
    """The `modality` tower's `EncoderOutput` (tokens, pooled, mask)."""
    if modality not in self.used:
      raise ValueError(f"this model has no {modality} tower; modalities={self.used}")
    return self.towers[modality](*inputs, train=train)

  def _project(self, modality: str, pooled: jax.Array) -> jax.Array:
    """Pooled `[B, width]` -> the embedding `[B, D]` (projected, normalised)."""
    if modality in self.projections:
      pooled = self.projections[modality](pooled)
    elif pooled.shape[-1] != self.embed_dim:
      raise ValueError(
        f"config.model.projection[{modality!r}]='none' needs the {modality} tower's width "
        f"({pooled.shape[-1]}) to equal embed_dim ({self.embed_dim})"
      )
    z = l2_normalize(pooled) if self.normalize else pooled.astype(jnp.float32)
    chex.assert_shape(z, (pooled.shape[0], self.embed_dim))
    return z

  def encode_image(self, image: jax.Array, *, train: bool = False) -> jax.Array:
    """uint8 `[B, H, W, 3]` -> unit-norm float32 `[B, D]`."""
    validate_batch({"image": image}, ("image",))
    return self._embed("image", image, train=train)

  def encode_text(self, text: jax.Array, text_mask: jax.Array, *, train: bool = False) -> jax.Array:
    """int32 `[B, L]` + bool `[B, L]` -> unit-norm float32 `[B, D]`."""
    validate_batch({"text": text, "text_mask": text_mask}, ("text",))
    return self._embed("text", text, text_mask, train=train)

  def encode_audio(
    self, audio: jax.Array, audio_mask: jax.Array, *, train: bool = False
  ) -> jax.Array:
    """float `[B, T]` + bool `[B, T]` -> unit-norm float32 `[B, D]`."""
    validate_batch({"audio": audio, "audio_mask": audio_mask}, ("audio",))
    return self._embed("audio", audio, audio_mask, train=train)

  def encode_video(self, video: jax.Array, *, train: bool = False) -> jax.Array:
    """uint8 `[B, F, H, W, 3]` -> unit-norm float32 `[B, D]`."""
    validate_batch({"video": video}, ("video",))
    return self._embed("video", video, train=train)

  def __call__(self, batch: dict, *, train: bool = False) -> dict:
    """Embeds every modality of the model present in `batch`.

    Returns {'image'|'text'|'audio'|'video': float32 `[B, D]` (unit norm
    unless `normalize=False`), ...,
    'logit_scale': scalar, 'logit_bias': scalar}, plus bool `[B]`
    '<modality>_present' copied from the batch where the batch has it.
    """
    return self._embed_batch(batch, train)[0]

  def _embed_batch(self, batch: dict, train: bool) -> tuple[dict, dict]:
    """`__call__`'s outputs, and each present modality's `EncoderOutput` (for
    models built on this one that read the towers' tokens)."""
    out, encoded = {}, {}
    for m in validate_batch(batch, tuple(self.used)):
      encoded[m] = self._encode(m, *[batch[k] for k in MODALITY_KEYS[m]], train=train)
      out[m] = self._project(m, encoded[m].pooled)
      if f"{m}_present" in batch:
        # Passed through so that losses can skip rows missing this modality.
        present = jnp.asarray(batch[f"{m}_present"]).astype(jnp.bool_)
        chex.assert_shape(present, (out[m].shape[0],))
        out[f"{m}_present"] = present
    out["logit_scale"] = self.logit_scale
    out["logit_bias"] = self.logit_bias
    return out, encoded
