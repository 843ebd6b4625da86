"""Cross-modal autoencoder: every modality reconstructed from every modality's shared code.

`cross_modal_autoencoder` is the contrastive model's towers and projections
(the code of modality m is its embedding, `config.model.normalize` as there)
plus one decoder per modality:

  image  patch decoder: code -> n patch tokens (+ positions) -> Transformer ->
         p x p x 3 pixels per patch, in [0, 1] (sigmoid)
  text   `TextDecoder` cross-attending to the code as a one-token memory
         (teacher-forced next-token logits)
  audio  chunk decoder: code -> tokens of `chunk` frames -> Transformer ->
         log-mel frames, normalised per utterance as the audio tower's front
         end normalises its input (the target is computed the same way)

With `joint='none'` each present modality's code is decoded into every
modality: 's_to_t' for s == t is autoencoding, s != t translation. With
`joint='poe'` (as MVAE) each modality also predicts a log-variance; the joint
code is the product of the Gaussian experts of the present modalities and a
standard-normal prior (precision-weighted mean), sampled in training; the
joint code ('joint_to_t') and each single-modality code (expert x prior) are
decoded, and 'kl' (mean over codes and rows of KL(q || N(0, I))) is output.

Outputs, besides the contrastive model's: 'recon/<s>_to_<t>' (image `[B, H,
W, 3]`, text logits `[B, L - 1, vocab]`, audio `[B, F, n_mels]`),
'recon_present/<s>_to_<t>' bool `[B]`, 'recon_target/audio' and
'recon_mask/audio' (the frames), and with 'poe' 'kl'. The 'reconstruction'
objective (cmjax/objectives/reconstruction.py) turns them into losses.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from cmjax.models import audio_features
from cmjax.models.contrastive import TriModalContrastive
from cmjax.models.layers import dense
from cmjax.models.registry import register
from cmjax.models.text_decoder import TextDecoder
from cmjax.models.transformer import Transformer

TARGETS = ("image", "text", "audio")


class TokenDecoder(nn.Module):
  """code `[B, D]` -> `[B, n, out]`: n learned-position tokens through a Transformer."""

  tokens: int
  out: int
  width: int = 128
  depth: int = 1
  num_heads: int = 4
  mlp_dim: int = 256
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, code: jax.Array, *, train: bool = False) -> jax.Array:
    x = dense(self.tokens * self.width, "expand", self.dtype, out_axis="mlp")(code)
    x = x.reshape(code.shape[0], self.tokens, self.width)
    pos = self.param(
      "pos_embedding",
      nn.with_logical_partitioning(nn.initializers.normal(0.02), ("pos", "embed")),
      (self.tokens, self.width),
    )
    x = x + pos[None].astype(x.dtype)
    if self.depth:
      x = Transformer(self.depth, self.num_heads, self.mlp_dim, dtype=self.dtype, name="blocks")(
        x, deterministic=not train
      )
    return dense(self.out, "out", self.dtype, in_axis="embed", out_axis=None)(x)


@register("cross_modal_autoencoder")
class CrossModalAutoencoder(TriModalContrastive):
  """Towers + per-modality decoders of the shared codes.

  Attributes (besides the contrastive model's):
    decoders: settings per target modality: image `dict(patch_size, width,
      depth, num_heads, mlp_dim)`; text `TextDecoder` settings; audio
      `dict(chunk, width, depth, num_heads, mlp_dim)` (frames per token).
      A modality without an entry gets the defaults; targets are the model's
      modalities.
    joint: 'none' or 'poe' (product of experts, with a KL term output).
  """

  decoders: dict | None = None
  joint: str = "none"

  def setup(self):
    super().setup()
    if self.joint not in ("none", "poe"):
      raise ValueError(f"config.model.joint={self.joint!r}; expected 'none' or 'poe'")
    unknown = set(self.used) - set(TARGETS)
    if unknown:
      raise ValueError(
        f"the cross-modal autoencoder decodes {list(TARGETS)}, not {sorted(unknown)}"
      )
    settings = {m: dict((self.decoders or {}).get(m) or {}) for m in self.used}
    features = self.data.features
    heads = {}
    if "image" in self.used:
      s = settings["image"]
      h, w, _ = features["image"].shape
      p = int(s.pop("patch_size", 8))
      if h % p or w % p:
        raise ValueError(f"config.model.decoders.image.patch_size={p} must divide {h}x{w}")
      self.image_grid = (h // p, w // p, p)
      heads["image"] = TokenDecoder(
        (h // p) * (w // p), p * p * 3, dtype=self.dtype, name="image_decoder", **s
      )
    if "text" in self.used:
      s = settings["text"]
      s.setdefault("max_len", self.data.text_length())
      s.setdefault("width", 128)
      s.setdefault("mlp_dim", 4 * s["width"])
      heads["text"] = TextDecoder(
        vocab_size=self.data.vocab_size, dtype=self.dtype, name="text_decoder", **s
      )
    if "audio" in self.used:
      s = settings["audio"]
      self.audio_chunk = int(s.pop("chunk", 4))
      front = self.towers["audio"]
      self.audio_frames = audio_features.num_frames(
        features["audio"].shape[0], front.n_fft, front.hop_length
      )
      n = math.ceil(self.audio_frames / self.audio_chunk)
      heads["audio"] = TokenDecoder(
        n, self.audio_chunk * front.n_mels, dtype=self.dtype, name="audio_decoder", **s
      )
    self.heads = heads
    if self.joint == "poe":
      self.logvar_heads = {m: dense(self.embed_dim, f"{m}_logvar", self.dtype) for m in self.used}

  def _decode(self, target: str, code: jax.Array, batch: dict, train: bool) -> jax.Array:
    if target == "image":
      gh, gw, p = self.image_grid
      x = self.heads["image"](code, train=train).reshape(-1, gh, gw, p, p, 3)
      x = x.transpose(0, 1, 3, 2, 4, 5).reshape(-1, gh * p, gw * p, 3)
      return jax.nn.sigmoid(x.astype(jnp.float32))
    if target == "text":
      return self.heads["text"](batch["text"][:, :-1], code[:, None, :], train=train)
    front = self.towers["audio"]
    x = self.heads["audio"](code, train=train)
    x = x.reshape(x.shape[0], -1, front.n_mels)[:, : self.audio_frames]
    return x.astype(jnp.float32)

  def _audio_target(self, batch: dict) -> tuple[jax.Array, jax.Array]:
    # The audio tower's own front end, without SpecAugment: the features it reads.
    return self.towers["audio"].log_mel_features(batch["audio"], batch["audio_mask"], train=False)

  def __call__(self, batch: dict, *, train: bool = False) -> dict:
    out, encoded = self._embed_batch(batch, train)
    present = {
      m: out.get(f"{m}_present", jnp.ones(encoded[m].pooled.shape[:1], jnp.bool_)) for m in encoded
    }
    codes = {m: out[m] for m in encoded}
    if self.joint == "poe":
      codes = self._product_of_experts(out, encoded, present, train)
      present = dict(present, joint=jnp.any(jnp.stack(list(present.values())), axis=0))
    if "audio" in encoded:
      out["recon_target/audio"], out["recon_mask/audio"] = self._audio_target(batch)
    for s, code in codes.items():
      for t in encoded:
        out[f"recon/{s}_to_{t}"] = self._decode(t, code, batch, train)
        out[f"recon_present/{s}_to_{t}"] = present[s] & present[t]
    return out

  def _product_of_experts(self, out, encoded, present, train) -> dict:
    """Codes {modality or 'joint': [B, D]}: each expert alone with the prior, and
    the product of all present ones; 'kl' added to `out`."""
    mus = {m: out[m] for m in encoded}
    logvars = {m: self.logvar_heads[m](encoded[m].pooled).astype(jnp.float32) for m in encoded}

    def product(ms):
      # The prior N(0, I) is an expert with precision 1 and mean 0.
      precision, weighted = 1.0, 0.0
      for m in ms:
        p = present[m][:, None].astype(jnp.float32) * jnp.exp(-logvars[m])
        precision, weighted = precision + p, weighted + p * mus[m]
      return weighted / precision, -jnp.log(precision)

    codes, kls = {}, []
    for name, ms in [(m, (m,)) for m in encoded] + [("joint", tuple(encoded))]:
      mu, logvar = product(ms)
      kl = 0.5 * jnp.sum(jnp.exp(logvar) + mu**2 - 1.0 - logvar, axis=-1)
      kls.append(jnp.mean(kl))
      if train:
        eps = jax.random.normal(self.make_rng("dropout"), mu.shape)
        mu = mu + jnp.exp(0.5 * logvar) * eps
      codes[name] = mu
    out["kl"] = jnp.mean(jnp.stack(kls))
    return codes
