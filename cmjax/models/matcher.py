"""Image–text (or image–speech) matching: does this caption describe this scene?

`matcher` is the contrastive model (`contrastive.py`: towers, projections,
temperature, so a contrastive term can train it too) plus a matching head: a
fusion from the zoo (cross-attention or a joint Transformer over both towers'
tokens) and a linear map to one logit, as in ALBEF / BLIP's ITM head.

For every example it scores the true pair and up to three negatives:
* 'dataset': the data's hard negative caption (`negative_text`: one attribute
  or the relation changed; `config.data.negative_text=True`);
* 'mined': ALBEF's in-batch hard negatives: for each image a caption of
  another example drawn with probability softmax(similarity) over the batch,
  and for each caption another example's image likewise (similarities of the
  contrastive embeddings, gradients stopped). Outside training the most
  similar other example is taken.

  c.model = dict(name="matcher", pair=("image", "text"), negatives=("dataset", "mined"),
                 fusion=dict(name="cross_attention", width=128, depth=2))

Outputs: the contrastive model's, plus 'match_logits' float32 `[B, 1 + K]`
(column 0 the true pair, then the negatives) and 'match_valid' bool
`[B, 1 + K]`. `match_score(batch)` gives the logit of each (image, text) row,
for evaluators.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from cmjax.models.contrastive import MODALITY_KEYS, TriModalContrastive
from cmjax.models.encoders import EncoderOutput
from cmjax.models.fusion import get_fusion_cls
from cmjax.models.registry import register

NEGATIVES = ("dataset", "mined")


def mined_partners(similarity: jax.Array, valid: jax.Array, rng: jax.Array | None) -> jax.Array:
  """For each row i, another column j != i: drawn with p ∝ exp(similarity[i, j])
  (rng given) or the most similar one (rng None).

  similarity: float `[B, B]`; valid: bool `[B]` (columns allowed). Returns
  int32 `[B]`.
  """
  b = similarity.shape[0]
  allowed = valid[None, :] & ~jnp.eye(b, dtype=jnp.bool_)
  logits = jnp.where(allowed, similarity, -jnp.inf)
  if rng is None:
    return jnp.argmax(logits, axis=1).astype(jnp.int32)
  return jax.random.categorical(rng, logits, axis=1).astype(jnp.int32)


def _rows(e: EncoderOutput, index: jax.Array) -> EncoderOutput:
  """The rows `index` `[B]` of an encoder output."""
  return jax.tree.map(lambda x: x[index], e)


@register("matcher")
class Matcher(TriModalContrastive):
  """Towers + a matching head over a pair of modalities.

  Attributes (besides the contrastive model's):
    pair: the two modalities matched: ('image', 'text') or ('image', 'audio').
    fusion: the matching head's fusion ('name' + kwargs; default
      cross_attention); its output goes through a linear map to one logit.
    negatives: which negatives are scored: any of 'dataset', 'mined'.
  """

  pair: tuple[str, str] = ("image", "text")
  fusion: dict | None = None
  negatives: tuple[str, ...] = ("dataset", "mined")

  def setup(self):
    super().setup()
    pair = tuple(self.pair)
    if len(pair) != 2 or any(m not in self.used for m in pair):
      raise ValueError(
        f"config.model.pair={pair}: expected two of the model's modalities {list(self.used)}"
      )
    unknown = set(self.negatives) - set(NEGATIVES)
    if unknown:
      raise ValueError(f"config.model.negatives has {sorted(unknown)}; expected any of {NEGATIVES}")
    if "dataset" in self.negatives and pair[1] != "text":
      raise ValueError("negatives 'dataset' are negative captions: they need pair=(..., 'text')")
    kw = dict(self.fusion or {"name": "cross_attention"})
    cls = get_fusion_cls(kw.pop("name", "cross_attention"))
    if cls.outputs_logits:
      raise ValueError("the matching head needs a fusion that outputs features, not logits")
    self.match_fusion = cls(modalities=pair, dtype=self.dtype, name="match_fusion", **kw)
    self.match_head = nn.Dense(1, dtype=self.dtype, name="match_head")

  def _score(self, a: EncoderOutput, b: EncoderOutput, train: bool) -> jax.Array:
    """Matching logits float32 `[B]` of the rows of a and b."""
    first, second = self.pair
    fused = self.match_fusion({first: a, second: b}, None, train=train)
    return self.match_head(fused)[:, 0].astype(jnp.float32)

  def match_score(self, batch: dict) -> jax.Array:
    """Matching logit float32 `[B]` of each row's pair (e.g. image, caption)."""
    first, second = self.pair
    enc = {
      m: self._encode(m, *[batch[k] for k in MODALITY_KEYS[m]], train=False) for m in self.pair
    }
    return self._score(enc[first], enc[second], False)

  def match_image_text(self, image: jax.Array, text: jax.Array, text_mask: jax.Array) -> jax.Array:
    """uint8 `[B, H, W, 3]`, int32 `[B, L]`, bool `[B, L]` -> matching logits `[B]`."""
    if tuple(self.pair) != ("image", "text"):
      raise ValueError(f"match_image_text needs pair=('image', 'text'), not {self.pair}")
    return self.match_score({"image": image, "text": text, "text_mask": text_mask})

  def __call__(self, batch: dict, *, train: bool = False) -> dict:
    out, encoded = self._embed_batch(batch, train)
    first, second = self.pair
    if first not in encoded or second not in encoded:
      return out
    a, b = encoded[first], encoded[second]
    size = a.tokens.shape[0]
    valid = jnp.ones((size,), jnp.bool_)
    for m in self.pair:
      if f"{m}_present" in out:
        valid &= out[f"{m}_present"]
    logits, masks = [self._score(a, b, train)], [valid]
    if "dataset" in self.negatives and "negative_text" in batch:
      neg = self._encode("text", batch["negative_text"], batch["negative_text_mask"], train=train)
      has = jnp.any(batch["negative_text_mask"], axis=1)  # "" where there is no negative
      logits.append(self._score(a, neg, train))
      masks.append(valid & has)
    if "mined" in self.negatives and size > 1:
      sim = jax.lax.stop_gradient(out[first] @ out[second].T)
      rng = self.make_rng("dropout") if train else None
      rng_a, rng_b = jax.random.split(rng) if rng is not None else (None, None)
      j = mined_partners(sim, valid, rng_a)  # a harder caption for each image
      i = mined_partners(sim.T, valid, rng_b)  # a harder image for each caption
      rows = jnp.arange(size)
      logits += [self._score(a, _rows(b, j), train), self._score(_rows(a, i), b, train)]
      # A batch with no other valid example has no negative to mine.
      masks += [valid & valid[j] & (j != rows), valid & valid[i] & (i != rows)]
    out["match_logits"] = jnp.stack(logits, axis=1)
    out["match_valid"] = jnp.stack(masks, axis=1)
    return out
