"""Word and byte tokenizers."""

import numpy as np
import pytest

from cmjax.data import shapes, tokenizers
from cmjax.data.tokenizers import BOS, EOS, PAD, UNK


def test_word_round_trip_over_shapes_captions():
  tok = tokenizers.get_tokenizer("word")
  assert tok.vocab_size == len(shapes.vocabulary()) + 4
  src = shapes.ShapesSource(split="validation", speech=False, num_examples=50)
  for i in range(50):
    ex = src[i]
    for text in ex["captions"] + [ex["negative_caption"], ex["question"], ex["answer"]]:
      ids = tok.encode(text)
      assert UNK not in ids, text
      assert tok.decode(ids) == text


def test_word_unknown_and_specials():
  tok = tokenizers.WordTokenizer(["red", "circle"])
  assert tok.encode("Red zebra circle") == [4, UNK, 5]
  assert tok.decode([BOS, 4, 5, EOS, PAD]) == "red circle"
  with pytest.raises(ValueError, match="vocab"):
    tokenizers.WordTokenizer(["red", "red"])


def test_pad_truncates_and_masks():
  tok = tokenizers.get_tokenizer("word")
  ids, mask = tok.pad("a red circle", 8)
  assert ids.dtype == np.int32 and mask.dtype == bool and ids.shape == mask.shape == (8,)
  assert ids[0] == BOS and ids[4] == EOS and mask.sum() == 5
  assert np.all(ids[~mask] == PAD)
  assert tok.decode(ids) == "a red circle"
  ids, mask = tok.pad("a small red circle to the left of a large blue square", 6)
  assert mask.all() and ids[0] == BOS
  assert tok.decode(ids) == "a small red circle to"


def test_byte_round_trip_unicode():
  tok = tokenizers.get_tokenizer("byte")
  text = "a größer ☃ circle"
  ids = tok.encode(text)
  assert min(ids) >= 4 and max(ids) < tok.vocab_size == 260
  assert tok.decode(ids) == text
  padded, mask = tok.pad(text, 64)
  assert tok.decode(padded[mask]) == text


def test_pad_batch_shapes():
  tok = tokenizers.get_tokenizer("byte")
  ids, mask = tok.pad_batch(["ab", "abcdef"], 5)
  assert ids.shape == (2, 5) and mask.sum(1).tolist() == [4, 5]


def test_unknown_name_lists_valid_names():
  with pytest.raises(ValueError, match="word, byte"):
    tokenizers.get_tokenizer("sentencepiece")
