"""The text decoder's cache computes the teacher-forced logits; greedy and beam
search decode as specified (beam search exact on a small enumerable model)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmjax.models import decoding
from cmjax.models.text_decoder import TextDecoder

VOCAB, MAX_LEN, BOS, EOS, PAD = 11, 7, 2, 3, 0


def _decoder_and_params(seed=0):
  dec = TextDecoder(VOCAB, MAX_LEN, width=16, depth=2, num_heads=2, mlp_dim=32)
  rng = np.random.default_rng(seed)
  memory = jnp.asarray(rng.normal(size=(3, 5, 12)), jnp.float32)  # memory width != decoder's
  mask = jnp.asarray(rng.random((3, 5)) > 0.3).at[:, 0].set(True)
  tokens = jnp.asarray(rng.integers(4, VOCAB, size=(3, MAX_LEN)), jnp.int32)
  params = dec.init(jax.random.key(seed), tokens, memory, mask)
  return dec, params, tokens, memory, mask


def test_cached_steps_equal_teacher_forcing():
  dec, params, tokens, memory, mask = _decoder_and_params()
  full = dec.apply(params, tokens, memory, mask)
  cache = dec.apply(params, memory, mask, method=dec.init_cache)
  for i in range(MAX_LEN):
    logits, cache = dec.apply(params, tokens[:, i], cache, method=dec.step)
    np.testing.assert_allclose(logits, full[:, i], atol=1e-5, rtol=1e-5)
  # The memory mask matters: the same tokens with all memory visible differ.
  other = dec.apply(params, tokens, memory, jnp.ones_like(mask))
  assert float(jnp.max(jnp.abs(other - full))) > 1e-3


def _step_fns(dec, params, memory, mask):
  def cached(seqs, i, cache):
    return dec.apply(params, seqs[:, i], cache, method=dec.step)

  def uncached(seqs, i, state):
    logits = dec.apply(params, seqs, state["memory"], state["mask"])
    return jax.lax.dynamic_index_in_dim(logits, i, axis=1, keepdims=False), state

  return (cached, dec.apply(params, memory, mask, method=dec.init_cache)), (
    uncached,
    dict(memory=memory, mask=mask),
  )


def test_greedy_and_beam_agree_with_and_without_cache():
  dec, params, _, memory, mask = _decoder_and_params(1)
  kw = dict(bos_id=BOS, eos_id=EOS, pad_id=PAD)
  results = []
  for fn, state in _step_fns(dec, params, memory, mask):
    g = jax.jit(lambda s, fn=fn: decoding.greedy(fn, s, 3, MAX_LEN, **kw))(state)
    b1, _ = decoding.beam_search(fn, state, 3, MAX_LEN, beam_size=1, **kw)
    b4, s4 = decoding.beam_search(fn, state, 3, MAX_LEN, beam_size=4, **kw)
    results.append((g, b1, b4, s4))
  for a, b in zip(*results):
    np.testing.assert_allclose(a, b, atol=1e-5)
  g, b1, _, _ = results[0]
  np.testing.assert_array_equal(g, b1)  # a beam of one is greedy
  assert (g[:, 0] == BOS).all()


def _markov(seed, vocab=5):
  """A model whose next-token logits depend only on the last token."""
  table = jnp.asarray(np.random.default_rng(seed).normal(size=(vocab, vocab)) * 2, jnp.float32)

  def step(seqs, i, state):
    last = jax.lax.dynamic_index_in_dim(seqs, i, axis=1, keepdims=False)
    return table[last], state

  return table, step


def _best_by_enumeration(table, max_len, bos, eos, pad):
  vocab = table.shape[0]
  logp = np.asarray(jax.nn.log_softmax(table.at[:, pad].set(-jnp.inf)))
  best, best_seq = -np.inf, None
  for tail in itertools.product(range(vocab), repeat=max_len - 1):
    seq, score, done = [bos], 0.0, False
    for t in tail:
      if done:
        if t != pad:
          break
      else:
        if t == pad:
          break
        score += logp[seq[-1], t]
        done = t == eos
      seq.append(t)
    else:
      if score > best:
        best, best_seq = score, seq
  return best, best_seq


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_search_finds_the_best_sequence_of_a_small_model(seed):
  max_len, vocab, bos, eos, pad = 5, 5, 1, 2, 0
  table, step = _markov(seed, vocab)
  want_score, want = _best_by_enumeration(table, max_len, bos, eos, pad)
  # A beam as wide as every live prefix makes the search exact.
  seqs, score = decoding.beam_search(
    step, {}, 1, max_len, beam_size=vocab ** (max_len - 2), bos_id=bos, eos_id=eos, pad_id=pad
  )
  np.testing.assert_allclose(float(score[0]), want_score, rtol=1e-5)
  assert list(np.asarray(seqs[0])) == want
  greedy_seq = decoding.greedy(step, {}, 1, max_len, bos_id=bos, eos_id=eos, pad_id=pad)
  _, greedy_score = decoding.beam_search(
    step, {}, 1, max_len, beam_size=1, bos_id=bos, eos_id=eos, pad_id=pad
  )
  assert float(score[0]) >= float(greedy_score[0]) - 1e-6
  assert int(greedy_seq[0, 0]) == bos
