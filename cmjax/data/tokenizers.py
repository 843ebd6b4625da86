"""Tokenizers that need no downloaded files.

Both share one layout of special ids, so models can rely on it::

    0 = <pad>   (padding; the batch's text_mask is False there)
    1 = <unk>   (word not in the vocabulary; never produced by ByteTokenizer)
    2 = <bos>   (prepended by ``pad``; usable as a CLS token)
    3 = <eos>   (appended by ``pad`` when it fits)
    4.. = words (WordTokenizer, in the order given) or bytes 0..255 (ByteTokenizer)

``encode`` returns only the content ids; ``pad`` adds <bos>/<eos>, truncates
and pads to a fixed length and returns ``(ids int32 [L], mask bool [L])``.
"""

from __future__ import annotations

import collections
import re
import string
from typing import Iterable, Sequence

import numpy as np

PAD, UNK, BOS, EOS = 0, 1, 2, 3
SPECIALS = ("<pad>", "<unk>", "<bos>", "<eos>")
NUM_SPECIALS = len(SPECIALS)


class _Tokenizer:
  vocab_size: int

  def encode(self, text: str) -> list[int]:
    raise NotImplementedError

  def decode(self, ids: Iterable[int]) -> str:
    raise NotImplementedError

  def pad(self, text: str, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """<bos> + ids + <eos>, truncated to ``max_len`` (the <eos> is dropped
    first, then content), padded with 0. Returns (int32 [max_len], bool [max_len])."""
    if max_len < 1:
      raise ValueError(f"max_len must be >= 1, got {max_len}")
    seq = [BOS] + self.encode(text) + [EOS]
    seq = seq[:max_len]
    ids = np.zeros((max_len,), np.int32)
    ids[: len(seq)] = seq
    mask = np.zeros((max_len,), bool)
    mask[: len(seq)] = True
    return ids, mask

  def pad_batch(self, texts: Sequence[str], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """``pad`` over a list: (int32 [B, max_len], bool [B, max_len])."""
    pairs = [self.pad(t, max_len) for t in texts]
    return (
      np.stack([p[0] for p in pairs]).reshape(len(texts), max_len),
      np.stack([p[1] for p in pairs]).reshape(len(texts), max_len),
    )


# Words and single punctuation marks ("a dog." -> "a", "dog", ".").
_WORD_OR_MARK = re.compile(r"\w+|[^\w\s]")


def split_words(text: str, punctuation: bool = False) -> list[str]:
  """Lower-cased words, split on whitespace (and punctuation marks with `punctuation`)."""
  text = text.lower()
  return _WORD_OR_MARK.findall(text) if punctuation else text.split()


def build_vocab(
  texts: Iterable[str], max_words: int, min_count: int = 1, punctuation: bool = True
) -> list[str]:
  """The `max_words` most frequent words of `texts` seen at least `min_count`
  times, most frequent first (ties alphabetical), for a `WordTokenizer`."""
  counts = collections.Counter()
  for t in texts:
    counts.update(split_words(t, punctuation))
  words = sorted(
    (w for w, c in counts.items() if c >= min_count and w not in SPECIALS),
    key=lambda w: (-counts[w], w),
  )
  return words[:max_words]


class WordTokenizer(_Tokenizer):
  """Word tokenizer over a fixed vocabulary (lower-cased input).

  Args:
    vocab: the words, e.g. ``shapes.vocabulary()``; id of ``vocab[k]`` is
      ``k + 4``. Duplicates and words containing whitespace are rejected.
    punctuation: also split off punctuation marks (for real captions); by
      default text is split on whitespace only.
  """

  def __init__(self, vocab: Sequence[str], punctuation: bool = False):
    vocab = list(vocab)
    if len(set(vocab)) != len(vocab):
      raise ValueError("vocab: contains duplicate words")
    for w in vocab:
      if not w or w != w.strip() or len(w.split()) != 1 or w in SPECIALS:
        raise ValueError(f"vocab: invalid word {w!r}")
    self.words = tuple(vocab)
    self.punctuation = punctuation
    self._ids = {w: k + NUM_SPECIALS for k, w in enumerate(vocab)}
    self.vocab_size = NUM_SPECIALS + len(vocab)

  def encode(self, text: str) -> list[int]:
    return [self._ids.get(w, UNK) for w in split_words(text, self.punctuation)]

  def decode(self, ids: Iterable[int]) -> str:
    """Words joined by spaces; <pad>/<bos>/<eos> dropped, unknown ids -> <unk>."""
    out = []
    for i in ids:
      i = int(i)
      if i in (PAD, BOS, EOS):
        continue
      k = i - NUM_SPECIALS
      out.append(self.words[k] if 0 <= k < len(self.words) else SPECIALS[UNK])
    return " ".join(out)


class ByteTokenizer(_Tokenizer):
  """UTF-8 bytes shifted by 4; no vocabulary file, works for any text."""

  vocab_size = NUM_SPECIALS + 256

  def encode(self, text: str) -> list[int]:
    return [b + NUM_SPECIALS for b in text.encode("utf-8")]

  def decode(self, ids: Iterable[int]) -> str:
    """Bytes back to text; special ids dropped, invalid UTF-8 replaced."""
    data = bytes(int(i) - NUM_SPECIALS for i in ids if NUM_SPECIALS <= int(i) < NUM_SPECIALS + 256)
    return data.decode("utf-8", errors="replace")


_NO_PUNCTUATION = str.maketrans("", "", string.punctuation)


def _check_pad_id(pad_id) -> int:
  if isinstance(pad_id, bool) or not isinstance(pad_id, int) or pad_id < 0:
    raise ValueError(f"config.data.tokenizer_options.pad_id={pad_id!r}: expected an id >= 0")
  return pad_id


class HFTokenizer(_Tokenizer):
  """A Hugging Face ``tokenizer.json`` (WordPiece as BERT's, byte-level BPE as
  CLIP's and GPT-2's, Unigram), run by the ``tokenizers`` library.

  ``pad`` adds the tokenizer's own special tokens (its post-processor: e.g.
  ``[CLS] ... [SEP]`` or ``<|startoftext|> ... <|endoftext|>``), truncates
  content (not those tokens) to ``max_len`` and pads with ``pad_id`` (0) where
  the mask is False, as ``transformers``' fast tokenizers do with
  ``truncation=True``. Normalisation (lower-casing, accents) is the file's;
  ``lowercase=True`` lower-cases first for files that lack it.
  """

  def __init__(self, path: str, lowercase: bool = False, pad_id: int = 0):
    import tokenizers  # pylint: disable=g-import-not-at-top

    try:
      self._tok = tokenizers.Tokenizer.from_file(path)
    except Exception as e:  # the Rust side raises a plain Exception
      raise ValueError(f"cannot read Hugging Face tokenizer file {path!r}: {e}") from None
    self._tok.no_padding()
    self._tok.no_truncation()
    self.path, self.lowercase, self.pad_id = path, lowercase, _check_pad_id(pad_id)
    self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)
    self._max_len = None

  def __getstate__(self):  # grain workers rebuild it from the file
    return {"path": self.path, "lowercase": self.lowercase, "pad_id": self.pad_id}

  def __setstate__(self, state):
    self.__init__(**state)

  def _text(self, text: str) -> str:
    return text.lower() if self.lowercase else text

  def encode(self, text: str) -> list[int]:
    return self._tok.encode(self._text(text), add_special_tokens=False).ids

  def decode(self, ids: Iterable[int]) -> str:
    return self._tok.decode([int(i) for i in ids], skip_special_tokens=True)

  def pad(self, text: str, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    if max_len < 1:
      raise ValueError(f"max_len must be >= 1, got {max_len}")
    if self._max_len != max_len:
      self._tok.enable_truncation(max_length=max_len)
      self._max_len = max_len
    seq = self._tok.encode(self._text(text), add_special_tokens=True).ids[:max_len]
    ids = np.full((max_len,), self.pad_id, np.int32)
    ids[: len(seq)] = seq
    mask = np.zeros((max_len,), bool)
    mask[: len(seq)] = True
    return ids, mask


class SentencePieceTokenizer(_Tokenizer):
  """A SentencePiece ``.model`` file (as T5's, SigLIP's and many multilingual
  text towers use), run by the ``sentencepiece`` library.

  ``pad`` gives ``[bos] + pieces + [eos]`` (each only where ``add_bos`` /
  ``add_eos`` and the model defines it; by default only </s>, as T5 and SigLIP
  do), truncated to ``max_len`` (content first, the end token kept), padded
  with ``pad_id`` (0) where the mask is False. SigLIP's text tower attends to
  its padding, so its weights need the id they were trained with (1, '</s>').
  ``strip_punctuation`` removes ASCII punctuation and repeated spaces first, as
  SigLIP's text was prepared (with ``lowercase``).
  """

  def __init__(
    self,
    path: str,
    add_bos: bool = False,
    add_eos: bool = True,
    lowercase: bool = False,
    pad_id: int = 0,
    strip_punctuation: bool = False,
  ):
    import sentencepiece  # pylint: disable=g-import-not-at-top

    try:
      self._sp = sentencepiece.SentencePieceProcessor(model_file=path)
    except (OSError, RuntimeError) as e:
      raise ValueError(f"cannot read SentencePiece model {path!r}: {e}") from None
    self.path, self.add_bos, self.add_eos, self.lowercase = path, add_bos, add_eos, lowercase
    self.pad_id, self.strip_punctuation = _check_pad_id(pad_id), bool(strip_punctuation)
    self.vocab_size = self._sp.get_piece_size()

  def __getstate__(self):
    keys = ("path", "add_bos", "add_eos", "lowercase", "pad_id", "strip_punctuation")
    return {k: getattr(self, k) for k in keys}

  def __setstate__(self, state):
    self.__init__(**state)

  def encode(self, text: str) -> list[int]:
    if self.lowercase:
      text = text.lower()
    if self.strip_punctuation:
      text = " ".join(text.translate(_NO_PUNCTUATION).split())
    return list(self._sp.encode(text))

  def decode(self, ids: Iterable[int]) -> str:
    specials = {self._sp.bos_id(), self._sp.eos_id(), self._sp.pad_id()}
    return self._sp.decode([int(i) for i in ids if int(i) not in specials])

  def pad(self, text: str, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    if max_len < 1:
      raise ValueError(f"max_len must be >= 1, got {max_len}")
    head = [self._sp.bos_id()] if self.add_bos and self._sp.bos_id() >= 0 else []
    tail = [self._sp.eos_id()] if self.add_eos and self._sp.eos_id() >= 0 else []
    room = max(max_len - len(head) - len(tail), 0)
    seq = (head + self.encode(text)[:room] + tail)[:max_len]
    ids = np.full((max_len,), self.pad_id, np.int32)
    ids[: len(seq)] = seq
    mask = np.zeros((max_len,), bool)
    mask[: len(seq)] = True
    return ids, mask


TOKENIZERS = ("word", "byte", "hf:PATH/tokenizer.json", "sentencepiece:PATH.model")


def get_tokenizer(name: str, **kwargs) -> _Tokenizer:
  """'word' (vocab=..., default ``shapes.vocabulary()``; punctuation=bool), 'byte',
  'hf:PATH' (a Hugging Face tokenizer.json; lowercase=bool) or
  'sentencepiece:PATH' (a .model file; add_bos, add_eos, lowercase)."""
  kind, _, path = name.partition(":")
  if kind == "hf" and path:
    return HFTokenizer(path, **kwargs)
  if kind == "sentencepiece" and path:
    return SentencePieceTokenizer(path, **kwargs)
  if name == "word":
    vocab = kwargs.pop("vocab", None)
    punctuation = bool(kwargs.pop("punctuation", False))
    if kwargs:
      raise ValueError(f"word tokenizer: unknown options {sorted(kwargs)}")
    if vocab is None:
      from cmjax.data import shapes

      vocab = shapes.vocabulary()
    return WordTokenizer(vocab, punctuation=punctuation)
  if name == "byte":
    if kwargs:
      raise ValueError(f"byte tokenizer: unknown options {sorted(kwargs)}")
    return ByteTokenizer()
  raise ValueError(f"unknown tokenizer {name!r}; valid names: {', '.join(TOKENIZERS)}")
