"""BLEU / CIDEr-D equal pycocoevalcap's scorers; WER / CER equal jiwer's."""

import numpy as np
import pytest

from cmjax.evaluators import text_metrics as tm

WORDS = "a the red blue green circle square star left right of above below big small".split()


def _sentence(rng, lo=3, hi=12):
  return " ".join(rng.choice(WORDS, size=rng.integers(lo, hi)))


def _corpus(seed, n=40):
  rng = np.random.default_rng(seed)
  refs = [[_sentence(rng) for _ in range(rng.integers(1, 6))] for _ in range(n)]
  # Hypotheses near their references (shared n-grams) and some unrelated ones.
  hyps = []
  for r in refs:
    words = r[0].split()
    if rng.random() < 0.7:
      words = [w if rng.random() < 0.8 else str(rng.choice(WORDS)) for w in words]
      hyps.append(" ".join(words[: rng.integers(1, len(words) + 1)]))
    else:
      hyps.append(_sentence(rng, 1, 15))
  return hyps, refs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bleu_and_cider_equal_pycocoevalcap(seed, capsys):
  bleu_ref = pytest.importorskip("pycocoevalcap.bleu.bleu")
  cider_ref = pytest.importorskip("pycocoevalcap.cider.cider")
  hyps, refs = _corpus(seed)
  gts = {i: r for i, r in enumerate(refs)}
  res = {i: [h] for i, h in enumerate(hyps)}
  want_bleu, _ = bleu_ref.Bleu(4).compute_score(gts, res)
  want_cider, want_each = cider_ref.Cider().compute_score(gts, res)
  capsys.readouterr()  # the reference prints its counts
  np.testing.assert_allclose(tm.bleu(hyps, refs), want_bleu, rtol=1e-9)
  cider, each = tm.cider_d(hyps, refs)
  np.testing.assert_allclose(cider, want_cider, rtol=1e-9)
  np.testing.assert_allclose(each, want_each, rtol=1e-9)


def test_caption_scores_order_and_bounds():
  refs = [["a red circle left of a blue square"], ["a big green star"]]
  exact = ["a red circle left of a blue square", "a big green star"]
  wrong = ["the small star above the green circle", "right of the small red square"]
  assert tm.bleu(exact, refs)[3] == pytest.approx(1.0)
  assert tm.bleu(wrong, refs)[3] < 1e-3
  assert tm.cider_d(exact, refs)[0] > tm.cider_d(wrong, refs)[0]
  with pytest.raises(ValueError, match=r"references\[1\] must be a non-empty list"):
    tm.bleu(exact, [["x"], "a big green star"])
  assert tm.caption_tokens("A Red, circle.") == "a red circle"


@pytest.mark.parametrize("seed", [0, 1])
def test_wer_and_cer_equal_jiwer(seed):
  jiwer = pytest.importorskip("jiwer")
  rng = np.random.default_rng(seed)
  refs = [_sentence(rng, 1, 10) for _ in range(50)]
  hyps = []
  for r in refs:
    words = [w for w in r.split() if rng.random() > 0.15]
    words = [w if rng.random() > 0.15 else str(rng.choice(WORDS)) for w in words]
    if rng.random() < 0.3:
      words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(WORDS)))
    hyps.append(" ".join(words))
  assert tm.word_error_rate(hyps, refs) == pytest.approx(jiwer.wer(refs, hyps), abs=1e-12)
  assert tm.char_error_rate(hyps, refs) == pytest.approx(jiwer.cer(refs, hyps), abs=1e-12)


def test_edit_distance_and_errors():
  assert tm.edit_distance("kitten", "sitting") == 3
  assert tm.edit_distance([], [1, 2]) == 2
  assert tm.word_error_rate(["a b c"], ["a b c"]) == 0.0
  assert tm.word_error_rate(["a x"], ["a b c"]) == pytest.approx(2 / 3)
  with pytest.raises(ValueError, match="all empty"):
    tm.word_error_rate(["a"], [""])
