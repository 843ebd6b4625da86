"""Speech recognition by CTC on any audio encoder's tokens.

`ctc_recognizer` is the contrastive model (`contrastive.py`) plus a CTC head
(LayerNorm + a `[width, vocab]` dense layer) on the `source` tower's tokens,
one distribution over the tokenizer's ids per encoder frame, id 0 (padding)
standing for the blank. Its towers have the contrastive model's parameter
names, so a contrastive (or alignment) run's audio tower starts it through
`config.init_from` ("text-aligned initialisation").

  c.model = dict(name="ctc_recognizer", modalities=("audio",), audio=dict(...))
  c.data.text_is_speech = True   # the text is what the speech says
  c.objectives = dict(ctc=dict(type="ctc"))

Outputs: the contrastive model's, plus 'ctc_logits' float32 `[B, n, vocab]`,
'ctc_mask' bool `[B, n]` (real frames) and 'ctc_present' bool `[B]`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from cmjax.models.contrastive import MODALITY_KEYS, TriModalContrastive, validate_batch
from cmjax.models.layers import dense, layer_norm
from cmjax.models.registry import register


@register("ctc_recognizer")
class CTCRecognizer(TriModalContrastive):
  """Towers + a CTC head on the `source` tower's tokens (default 'audio')."""

  source: str = "audio"

  def setup(self):
    super().setup()
    self._check_source(self.source, "CTC recognizer")
    self.ctc_norm = layer_norm("ctc_norm", self.dtype)
    self.ctc_head = dense(self.data.vocab_size, "ctc_head", self.dtype, out_axis="vocab")

  def _ctc(self, encoded) -> tuple[jax.Array, jax.Array]:
    logits = self.ctc_head(self.ctc_norm(encoded.tokens)).astype(jnp.float32)
    mask = encoded.mask
    if mask is None:
      mask = jnp.ones(logits.shape[:2], jnp.bool_)
    return logits, mask

  def __call__(self, batch: dict, *, train: bool = False) -> dict:
    out, encoded = self._embed_batch(batch, train)
    if self.source in encoded:
      out["ctc_logits"], out["ctc_mask"] = self._ctc(encoded[self.source])
      rows = out["ctc_logits"].shape[:1]
      out["ctc_present"] = out.get(f"{self.source}_present", jnp.ones(rows, jnp.bool_))
    return out

  def transcribe_logits(self, *inputs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The source modality's arrays -> (CTC logits `[B, n, vocab]`, frame mask `[B, n]`)."""
    validate_batch(dict(zip(MODALITY_KEYS[self.source], inputs)), (self.source,))
    return self._ctc(self._encode(self.source, *inputs, train=False))
