"""Decoding CTC outputs: greedy (best path) and prefix beam search. NumPy, on the host.

A CTC output is a distribution over `V` ids per frame, one of them the blank.
A label sequence is read from a frame path by merging repeated ids and then
dropping blanks; its probability sums over every path that reads as it.

* `greedy`: the most likely id per frame, read as above (the best path's labels).
* `prefix_beam_search`: keeps the `beam_size` most probable label prefixes,
  each with the probability of its paths ending in a blank and in its last
  label, so that paths reading as the same prefix are summed, not competing.
  With a beam wider than the number of prefixes it finds the most probable
  label sequence exactly (tests/test_ctc.py checks this by enumeration).
"""

from __future__ import annotations

import numpy as np


def greedy(logits: np.ndarray, length: int | None = None, blank_id: int = 0) -> list[int]:
  """Best-path labels of `logits` `[T, V]` (its first `length` frames)."""
  best = np.argmax(np.asarray(logits)[:length], axis=-1)
  out, previous = [], None
  for i in best.tolist():
    if i != previous and i != blank_id:
      out.append(i)
    previous = i
  return out


def _logaddexp(*xs: float) -> float:
  return float(np.logaddexp.reduce(np.asarray(xs, np.float64)))


def prefix_beam_search(
  logits: np.ndarray, length: int | None = None, beam_size: int = 8, blank_id: int = 0
) -> list[int]:
  """The most probable label sequence found keeping `beam_size` prefixes.

  `logits` `[T, V]` (log-softmax is taken here); only the first `length` frames count."""
  x = np.asarray(logits, np.float64)[:length]
  logp = x - np.logaddexp.reduce(x, axis=-1, keepdims=True)
  neg = -np.inf
  # prefix -> (log p of its paths ending in blank, ... ending in its last label)
  beams = {(): (0.0, neg)}
  for frame in logp:
    nxt: dict[tuple, list[float]] = {}

    def add(prefix, blank=neg, label=neg):
      b, nb = nxt.get(prefix, (neg, neg))
      nxt[prefix] = (_logaddexp(b, blank), _logaddexp(nb, label))

    for prefix, (b, nb) in beams.items():
      total = _logaddexp(b, nb)
      add(prefix, blank=total + frame[blank_id])
      last = prefix[-1] if prefix else None
      for v in range(len(frame)):
        if v == blank_id:
          continue
        if v == last:
          add(prefix, label=nb + frame[v])  # a repeat without a blank merges
          add(prefix + (v,), label=b + frame[v])  # after a blank it is a new label
        else:
          add(prefix + (v,), label=total + frame[v])
    ranked = sorted(nxt.items(), key=lambda kv: -_logaddexp(*kv[1]))
    beams = dict(ranked[:beam_size])
  best = max(beams.items(), key=lambda kv: _logaddexp(*kv[1]))
  return list(best[0])


def sequence_log_prob(logits: np.ndarray, labels: list[int], blank_id: int = 0) -> float:
  """log p(labels | logits `[T, V]`) by the CTC forward recursion (for tests and
  rescoring)."""
  x = np.asarray(logits, np.float64)
  logp = x - np.logaddexp.reduce(x, axis=-1, keepdims=True)
  ext = [blank_id]
  for label in labels:
    ext += [label, blank_id]
  alpha = np.full(len(ext), -np.inf)
  alpha[0] = logp[0, blank_id]
  if len(ext) > 1:
    alpha[1] = logp[0, ext[1]]
  for t in range(1, len(logp)):
    prev = alpha.copy()
    for s in range(len(ext)):
      terms = [prev[s]]
      if s >= 1:
        terms.append(prev[s - 1])
      if s >= 2 and ext[s] != blank_id and ext[s] != ext[s - 2]:
        terms.append(prev[s - 2])
      alpha[s] = _logaddexp(*terms) + logp[t, ext[s]]
  return _logaddexp(alpha[-1], alpha[-2]) if len(ext) > 1 else float(alpha[-1])
