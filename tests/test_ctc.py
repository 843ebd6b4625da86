"""CTC: the loss equals torch's and the forward recursion; greedy and prefix
beam search decode as defined (beam search exact against enumeration)."""

import itertools

import jax.numpy as jnp
import numpy as np
import pytest

from cmjax import sequence_losses
from cmjax.models import ctc_decoding


def _case(seed=0, b=3, t=12, v=6, n=4):
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=(b, t, v)).astype(np.float32)
  frames = np.array([t, t - 3, t - 5])[:b]
  lengths = np.array([n, n - 1, 2])[:b]
  labels = rng.integers(1, v, size=(b, n))
  labels[1, 1] = labels[1, 0]  # a repeated label needs a blank between
  frame_mask = np.arange(t)[None] < frames[:, None]
  label_mask = np.arange(n)[None] < lengths[:, None]
  return logits, frame_mask, np.where(label_mask, labels, 0), label_mask


def test_ctc_loss_equals_torch():
  torch = pytest.importorskip("torch")
  logits, frame_mask, labels, label_mask = _case()
  ours = sequence_losses.ctc_loss(
    *(jnp.asarray(a) for a in (logits, frame_mask, labels, label_mask))
  )
  logp = torch.log_softmax(torch.tensor(logits), -1).transpose(0, 1)  # [T, B, V]
  want = torch.nn.functional.ctc_loss(
    logp,
    torch.tensor(labels),
    torch.tensor(frame_mask.sum(1)),
    torch.tensor(label_mask.sum(1)),
    blank=0,
    reduction="none",
  )
  np.testing.assert_allclose(np.asarray(ours), want.numpy(), rtol=1e-4)


def test_ctc_loss_equals_the_forward_recursion():
  logits, frame_mask, labels, label_mask = _case(1)
  ours = sequence_losses.ctc_loss(
    *(jnp.asarray(a) for a in (logits, frame_mask, labels, label_mask))
  )
  for i in range(len(logits)):
    t, n = frame_mask[i].sum(), label_mask[i].sum()
    want = -ctc_decoding.sequence_log_prob(logits[i, :t], list(labels[i, :n]))
    np.testing.assert_allclose(float(ours[i]), want, rtol=1e-4)


def test_greedy_merges_repeats_and_drops_blanks():
  frames = [1, 1, 0, 1, 2, 2, 0, 0, 3]
  logits = np.eye(4)[frames] * 5
  assert ctc_decoding.greedy(logits) == [1, 1, 2, 3]
  assert ctc_decoding.greedy(logits, length=4) == [1, 1]


def _best_by_enumeration(logits):
  logp = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
  totals = {}
  for path in itertools.product(range(logits.shape[1]), repeat=len(logits)):
    labels = tuple(ctc_decoding.greedy(np.eye(logits.shape[1])[list(path)]))
    score = sum(logp[t, p] for t, p in enumerate(path))
    totals[labels] = np.logaddexp(totals.get(labels, -np.inf), score)
  return max(totals.items(), key=lambda kv: kv[1])


@pytest.mark.parametrize("seed", range(4))
def test_prefix_beam_search_finds_the_most_probable_labels(seed):
  rng = np.random.default_rng(seed)
  # Peaky frames with a strong blank, as trained CTC outputs look: the best
  # path and the most probable labelling then often differ (seeds 1 and 2 here).
  logits = rng.normal(size=(6, 3)) * 1.5
  logits[:, 0] += 1.0
  labels, score = _best_by_enumeration(logits)
  found = ctc_decoding.prefix_beam_search(logits, beam_size=200)
  assert tuple(found) == labels
  np.testing.assert_allclose(ctc_decoding.sequence_log_prob(logits, found), score, rtol=1e-9)
  narrow = ctc_decoding.prefix_beam_search(logits, beam_size=1)
  assert ctc_decoding.sequence_log_prob(logits, narrow) <= score + 1e-9
