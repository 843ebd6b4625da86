"""Subword tokenizers from users' files: a Hugging Face tokenizer.json (WordPiece
with BERT's [CLS]/[SEP], byte-level BPE) and a SentencePiece model, each built
here from a few sentences and checked against its own library."""

import pickle

import numpy as np
import pytest

from cmjax.data import tokenizers as tok_lib

SENTENCES = [
  "a red circle left of a blue square",
  "two small green triangles above a large star",
  "the cat sat on the mat; the dog did not.",
  "Ünïcode wörds and numbers 12345 too",
] * 5


@pytest.fixture(scope="module")
def wordpiece(tmp_path_factory):
  tokenizers = pytest.importorskip("tokenizers")
  path = str(tmp_path_factory.mktemp("wp") / "tokenizer.json")
  tok = tokenizers.BertWordPieceTokenizer(lowercase=True)
  tok.train_from_iterator(SENTENCES, vocab_size=120, min_frequency=1)
  from tokenizers import processors

  # As BERT's tokenizer.json has it: [CLS] text [SEP].
  tok.post_processor = processors.BertProcessing(
    ("[SEP]", tok.token_to_id("[SEP]")), ("[CLS]", tok.token_to_id("[CLS]"))
  )
  tok.save(path)
  return path


@pytest.fixture(scope="module")
def bpe(tmp_path_factory):
  tokenizers = pytest.importorskip("tokenizers")
  path = str(tmp_path_factory.mktemp("bpe") / "tokenizer.json")
  tok = tokenizers.ByteLevelBPETokenizer()
  tok.train_from_iterator(
    SENTENCES, vocab_size=300, min_frequency=1, special_tokens=["<s>", "</s>"]
  )
  from tokenizers import processors

  tok.post_processor = processors.TemplateProcessing(
    single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 1)]
  )
  tok.save(path)
  return path


def test_wordpiece_adds_cls_and_sep_and_truncates_content(wordpiece):
  import tokenizers

  ref = tokenizers.Tokenizer.from_file(wordpiece)
  ours = tok_lib.get_tokenizer(f"hf:{wordpiece}")
  cls, sep = ref.token_to_id("[CLS]"), ref.token_to_id("[SEP]")
  for text in SENTENCES[:4]:
    content = ref.encode(text, add_special_tokens=False).ids
    ids, mask = ours.pad(text, 32)
    n = len(content) + 2
    assert ids[:n].tolist() == [cls, *content, sep] and mask.sum() == n and not ids[n:].any()
    ids, mask = ours.pad(text, 6)  # truncated: content cut, [SEP] kept
    assert ids.tolist() == [cls, *content[:4], sep] and mask.all()
  assert ours.vocab_size == ref.get_vocab_size()
  assert ours.decode(ours.encode("the cat sat")) == "the cat sat"


def test_byte_level_bpe_round_trips_any_text(bpe):
  ours = tok_lib.get_tokenizer(f"hf:{bpe}")
  text = "the dog did not. Ünïcode!"
  ids, mask = ours.pad(text, 64)
  assert ids[0] == 0 and ids[mask.sum() - 1] == 1  # <s> ... </s>
  assert ours.decode(ids[mask]) == text


def test_sentencepiece_appends_eos_and_matches_the_library(tmp_path):
  spm = pytest.importorskip("sentencepiece")
  prefix = str(tmp_path / "sp")
  spm.SentencePieceTrainer.train(
    sentence_iterator=iter(SENTENCES),
    model_prefix=prefix,
    vocab_size=40,
    model_type="unigram",
    pad_id=0,
    unk_id=1,
    bos_id=2,
    eos_id=3,
    minloglevel=2,
  )
  ref = spm.SentencePieceProcessor(model_file=prefix + ".model")
  ours = tok_lib.get_tokenizer(f"sentencepiece:{prefix}.model")
  text = SENTENCES[1]
  ids, mask = ours.pad(text, 64)
  want = ref.encode(text) + [3]
  assert ids[: len(want)].tolist() == want and mask.sum() == len(want)
  short, _ = ours.pad(text, 5)
  assert short.tolist() == ref.encode(text)[:4] + [3]
  with_bos = tok_lib.get_tokenizer(f"sentencepiece:{prefix}.model", add_bos=True)
  assert with_bos.pad(text, 64)[0][0] == 2
  assert ours.decode(ids[mask]) == ref.decode(ref.encode(text))


def test_tokenizers_survive_pickling_for_grain_workers(wordpiece):
  ours = tok_lib.get_tokenizer(f"hf:{wordpiece}", lowercase=True)
  again = pickle.loads(pickle.dumps(ours))
  np.testing.assert_array_equal(again.pad("The CAT", 8)[0], ours.pad("The CAT", 8)[0])


def test_bad_tokenizer_files_are_named(tmp_path):
  bad = tmp_path / "tokenizer.json"
  bad.write_text("{not json")
  with pytest.raises(ValueError, match="tokenizer.json"):
    tok_lib.get_tokenizer(f"hf:{bad}")
  with pytest.raises(ValueError, match="missing.model"):
    tok_lib.get_tokenizer(f"sentencepiece:{tmp_path / 'missing.model'}")
  with pytest.raises(ValueError, match="unknown tokenizer 'bert'"):
    tok_lib.get_tokenizer("bert")
