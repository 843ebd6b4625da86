"""Scores of generated text: BLEU-1..4 and CIDEr-D (captioning), WER and CER
(speech recognition). Pure Python over strings, no model.

Captions are compared as the COCO caption evaluation compares them: each
string is already tokenised (words separated by spaces; `caption_tokens`
lowercases and strips punctuation), a hypothesis is scored against every
reference of its example, and

* BLEU-n is corpus-level: clipped n-gram matches and hypothesis n-grams are
  summed over the corpus, the brevity penalty uses for each hypothesis the
  reference length closest to its own (ties: the shorter), and the ratios are
  offset by 1e-9 / 1e-15 so that a missing order gives ~0 rather than an error.
* CIDEr-D weights each n-gram (n = 1..4) by TF-IDF, the document frequency
  counted over the references of the evaluated corpus (an example counts once),
  clips the hypothesis weights at the reference's, multiplies by a Gaussian
  penalty on the length difference (sigma 6, lengths counted in bigrams),
  averages the cosine over references and n, and scales by 10.

`tests/test_text_metrics.py` checks both against pycocoevalcap's scorers, and
WER / CER against jiwer.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Sequence

import numpy as np

_PUNCTUATION = re.compile(r"[^\w\s']")


def caption_tokens(text: str) -> str:
  """Lowercased words separated by single spaces, punctuation dropped."""
  return " ".join(_PUNCTUATION.sub(" ", text.lower()).split())


def _ngrams(words: Sequence[str], n: int) -> Counter:
  return Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def _check(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> None:
  if len(hypotheses) != len(references):
    raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists")
  for i, refs in enumerate(references):
    if isinstance(refs, str) or not refs:
      raise ValueError(f"references[{i}] must be a non-empty list of strings, got {refs!r}")


def bleu(
  hypotheses: Sequence[str], references: Sequence[Sequence[str]], max_n: int = 4
) -> list[float]:
  """Corpus BLEU-1..max_n of tokenised `hypotheses` [N] against `references` [N][R_i]."""
  _check(hypotheses, references)
  matches, totals = np.zeros(max_n), np.zeros(max_n)
  hyp_len = ref_len = 0
  for hyp, refs in zip(hypotheses, references):
    words = hyp.split()
    ref_words = [r.split() for r in refs]
    hyp_len += len(words)
    ref_len += min((abs(len(r) - len(words)), len(r)) for r in ref_words)[1]
    for n in range(1, max_n + 1):
      counts = _ngrams(words, n)
      most = Counter()
      for r in ref_words:
        most |= _ngrams(r, n)  # the largest count of each n-gram in any reference
      matches[n - 1] += sum(min(c, most[g]) for g, c in counts.items())
      totals[n - 1] += max(len(words) - n + 1, 0)
  ratio = (hyp_len + 1e-9) / (ref_len + 1e-15)
  penalty = math.exp(1 - 1 / ratio) if ratio < 1 else 1.0
  precisions = (matches + 1e-9) / (totals + 1e-15)
  return [penalty * float(np.prod(precisions[:n])) ** (1 / n) for n in range(1, max_n + 1)]


def cider_d(
  hypotheses: Sequence[str],
  references: Sequence[Sequence[str]],
  max_n: int = 4,
  sigma: float = 6.0,
) -> tuple[float, np.ndarray]:
  """CIDEr-D of tokenised `hypotheses` [N] against `references` [N][R_i].

  Returns (corpus score, per-example scores `[N]`)."""
  _check(hypotheses, references)
  grams = lambda s: sum((_ngrams(s.split(), n) for n in range(1, max_n + 1)), Counter())
  hyp_counts = [grams(h) for h in hypotheses]
  ref_counts = [[grams(r) for r in refs] for refs in references]
  df = Counter()
  for refs in ref_counts:
    df.update(set().union(*refs))
  log_n = math.log(float(len(hypotheses)))

  def vectors(counts):
    vec = [{} for _ in range(max_n)]
    for g, tf in counts.items():
      vec[len(g) - 1][g] = tf * (log_n - math.log(max(1.0, df[g])))
    norms = [math.sqrt(sum(v * v for v in d.values())) for d in vec]
    length = sum(tf for g, tf in counts.items() if len(g) == 2)
    return vec, norms, length

  scores = np.zeros(len(hypotheses))
  for i, (h, refs) in enumerate(zip(hyp_counts, ref_counts)):
    hv, hn, hl = vectors(h)
    total = np.zeros(max_n)
    for r in refs:
      rv, rn, rl = vectors(r)
      penalty = math.exp(-((hl - rl) ** 2) / (2 * sigma**2))
      for n in range(max_n):
        dot = sum(min(w, rv[n].get(g, 0.0)) * rv[n].get(g, 0.0) for g, w in hv[n].items())
        if hn[n] and rn[n]:
          dot /= hn[n] * rn[n]
        total[n] += dot * penalty
    scores[i] = 10.0 * float(np.mean(total)) / len(refs)
  return float(np.mean(scores)), scores


def edit_distance(a: Sequence, b: Sequence) -> int:
  """Levenshtein distance (unit substitution, insertion and deletion costs)."""
  row = list(range(len(b) + 1))
  for i, x in enumerate(a, 1):
    prev, row[0] = row[0], i
    for j, y in enumerate(b, 1):
      prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
  return row[-1]


def _error_rate(hypotheses, references, split) -> float:
  if len(hypotheses) != len(references):
    raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
  edits = total = 0
  for hyp, ref in zip(hypotheses, references):
    r = split(ref)
    edits += edit_distance(split(hyp), r)
    total += len(r)
  if total == 0:
    raise ValueError("the references are all empty: an error rate needs reference words")
  return edits / total


def word_error_rate(hypotheses: Sequence[str], references: Sequence[str]) -> float:
  """Corpus WER: word edits summed over pairs / reference words summed."""
  return _error_rate(hypotheses, references, str.split)


def char_error_rate(hypotheses: Sequence[str], references: Sequence[str]) -> float:
  """Corpus CER: character edits / reference characters (spaces count; runs of
  whitespace count as one space, ends stripped)."""
  return _error_rate(hypotheses, references, lambda s: list(" ".join(s.split())))
