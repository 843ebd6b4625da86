"""Encoders with a text decoder: captioning (image / video / speech -> text) and CoCa.

`captioner` is the contrastive model (`contrastive.py`: towers, projections,
temperature) plus a `TextDecoder` that cross-attends to one tower's tokens,
the `source`. Trained with the 'captioning' objective alone it is a
captioner (or, from speech, a sequence-to-sequence recogniser); with 'clip'
or 'siglip' as a further weighted term and a text tower it is CoCa-style
(the text tower is separate from the decoder here, unlike CoCa's split
decoder).

  c.model = dict(name="captioner", source="image", modalities=("image",),
                 image=dict(name="vit", ...), decoder=dict(width=128, depth=2))

Outputs: the contrastive model's, plus 'caption_logits' float32
`[B, L - 1, vocab]` (teacher forcing: position i predicts `text[:, i + 1]`)
and 'caption_present' bool `[B]` when the batch has text. `Generator` decodes
captions from source inputs under `jit` (greedy or beam search, with or
without the key/value cache).
"""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp

from cmjax.data import spec as spec_lib
from cmjax.data import tokenizers
from cmjax.models import decoding
from cmjax.models.contrastive import MODALITY_KEYS, TriModalContrastive, validate_batch
from cmjax.models.registry import register
from cmjax.models.text_decoder import TextDecoder


@register("captioner")
class Captioner(TriModalContrastive):
  """Towers + a text decoder over the `source` tower's tokens.

  Attributes (besides the contrastive model's):
    source: the modality the decoder reads ('image', 'video' or 'audio').
    decoder: `TextDecoder` settings (width, depth, num_heads, mlp_dim,
      dropout_rate, ...); vocabulary and length come from the data.
  """

  source: str = "image"
  decoder: dict | None = None

  def setup(self):
    super().setup()
    self._check_source(self.source, "captioner")
    settings = dict(self.decoder or {})
    settings.setdefault("max_len", self.data.text_length())
    self.text_decoder = TextDecoder(
      vocab_size=self.data.vocab_size, dtype=self.dtype, name="text_decoder", **settings
    )

  def __call__(self, batch: dict, *, train: bool = False) -> dict:
    out, encoded = self._embed_batch(batch, train)
    memory = encoded.get(self.source)
    if "text" in batch and memory is not None:
      text = batch["text"]
      out["caption_logits"] = self.text_decoder(
        text[:, :-1], memory.tokens, memory.mask, train=train
      )
      present = jnp.ones(text.shape[:1], jnp.bool_)
      for m in (self.source, "text"):
        if f"{m}_present" in batch:
          present &= jnp.asarray(batch[f"{m}_present"]).astype(jnp.bool_)
      out["caption_present"] = present
    return out

  def encode_source(self, *inputs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The source modality's arrays -> (tokens `[B, M, d]`, bool mask `[B, M]`)."""
    validate_batch(dict(zip(MODALITY_KEYS[self.source], inputs)), (self.source,))
    encoded = self._encode(self.source, *inputs, train=False)
    mask = encoded.mask
    if mask is None:
      mask = jnp.ones(encoded.tokens.shape[:2], jnp.bool_)
    return encoded.tokens, mask

  def init_decode(self, memory: jax.Array, memory_mask: jax.Array) -> dict:
    return self.text_decoder.init_cache(memory, memory_mask)

  def decode_step(self, tokens: jax.Array, cache: dict) -> tuple[jax.Array, dict]:
    return self.text_decoder.step(tokens, cache)

  def decode_all(self, tokens: jax.Array, memory: jax.Array, memory_mask: jax.Array) -> jax.Array:
    """Teacher-forced logits `[B, L, vocab]` (the uncached decoding reference)."""
    return self.text_decoder(tokens, memory, memory_mask)


class Generator:
  """Captions from source inputs: `generator(variables, *inputs) -> int32 [B, max_len]`.

  Args:
    model: a `Captioner` (unbound).
    max_len: tokens per output, bos included (default: the decoder's max_len).
    beam_size: 1 for greedy decoding, else beam search.
    cache: decode with the key/value cache (False recomputes the whole prefix
      each step: the reference it must equal, and the speed it saves).
    bos_id, eos_id, pad_id: the tokenizer's (cmjax's own tokenizers' by default).
    length_penalty: beam search's `log p / length ** length_penalty`.
  """

  def __init__(
    self,
    model: Captioner,
    *,
    max_len: int | None = None,
    beam_size: int = 1,
    cache: bool = True,
    bos_id: int = tokenizers.BOS,
    eos_id: int = tokenizers.EOS,
    pad_id: int = tokenizers.PAD,
    length_penalty: float = 0.0,
  ):
    self.model = model
    settings = dict(model.decoder or {})
    limit = settings.get("max_len") or model.data.text_length()
    self.max_len = int(max_len or limit)
    if self.max_len > limit:
      raise ValueError(f"max_len={self.max_len} exceeds the decoder's {limit} positions")
    ids = dict(bos_id=bos_id, eos_id=eos_id, pad_id=pad_id)
    self._fn = jax.jit(
      lambda variables, *inputs: self._generate(
        variables, inputs, beam_size, cache, ids, length_penalty
      )
    )

  def _generate(self, variables, inputs, beam_size, cache, ids, length_penalty):
    m = self.model
    memory, mask = m.apply(variables, *inputs, method=m.encode_source)
    if cache:
      state = m.apply(variables, memory, mask, method=m.init_decode)

      def step(seqs, i, state):
        token = jax.lax.dynamic_index_in_dim(seqs, i, axis=1, keepdims=False)
        return m.apply(variables, token, state, method=m.decode_step)
    else:
      state = dict(memory=memory, mask=mask)

      def step(seqs, i, state):
        logits = m.apply(variables, seqs, state["memory"], state["mask"], method=m.decode_all)
        return jax.lax.dynamic_index_in_dim(logits, i, axis=1, keepdims=False), state

    batch = memory.shape[0]
    if beam_size == 1:
      return decoding.greedy(step, state, batch, self.max_len, **ids)
    seqs, _ = decoding.beam_search(
      step, state, batch, self.max_len, beam_size=beam_size, length_penalty=length_penalty, **ids
    )
    return seqs

  def __call__(self, variables: Any, *inputs: jax.Array) -> jax.Array:
    """`variables` of the model; `inputs` the source modality's batch arrays
    (`spec_lib.modality(source).keys`, e.g. uint8 images `[B, H, W, 3]`)."""
    seqs = self._fn(variables, *inputs)
    chex.assert_shape(seqs, (inputs[0].shape[0], self.max_len))
    return seqs


def source_keys(model: Captioner) -> tuple[str, ...]:
  """The batch keys the generator takes, in order."""
  return tuple(spec_lib.modality(model.source).keys)
