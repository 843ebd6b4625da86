"""Text encoders: TextTransformer options (causal, positions) and TextRNN."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmjax.models.text_encoder import TextTransformer
from cmjax.models.text_rnn import TextRNN

B, L, W, V = 3, 7, 16, 40
ALLOWED = {"embed", "mlp", "heads", "head_dim", "vocab", "conv_in", "mels", "pos", None}
TT = dict(vocab_size=V, max_len=16, width=W, depth=1, num_heads=2, mlp_dim=32)
RNN = dict(vocab_size=V, width=W)

# Every option value appears at least once (pools, positions, causal, scan/remat,
# cells, directions, depth).
ENCODERS = {
  "tt_default_first": lambda: TextTransformer(**TT, pool="first"),
  "tt_causal_last": lambda: TextTransformer(**TT, causal=True, pool="last"),
  "tt_causal_sin_scan_remat": lambda: TextTransformer(
    **{**TT, "depth": 2}, causal=True, positions="sinusoidal", scan=True, remat=True
  ),
  "lstm_last": lambda: TextRNN(**RNN),
  "gru_mean": lambda: TextRNN(**RNN, cell="gru", pool="mean"),
  "lstm_bi_mean": lambda: TextRNN(**RNN, bidirectional=True, pool="mean"),
  "gru_bi_last_depth2": lambda: TextRNN(**RNN, cell="gru", bidirectional=True, depth=2),
}
CAUSAL = ["tt_causal_last", "tt_causal_sin_scan_remat", "lstm_last", "gru_mean"]


def _batch(seed=0):
  rng = np.random.default_rng(seed)
  lengths = np.array([L, 4, 1])  # full, padded, a single token
  mask = np.arange(L)[None] < lengths[:, None]
  text = np.where(mask, rng.integers(1, V, (B, L)), 0).astype(np.int32)
  return text, mask


_CACHE = {}


def _setup(name):
  """(module, boxed variables, jitted apply) per encoder, built once."""
  if name not in _CACHE:
    enc = ENCODERS[name]()
    text, mask = _batch()
    boxed = jax.jit(enc.init)(jax.random.PRNGKey(0), text, mask)
    _CACHE[name] = (enc, boxed, jax.jit(enc.apply))
  return _CACHE[name]


@pytest.mark.parametrize("name", list(ENCODERS))
def test_shapes_padding_invariance_names_and_gradients(name):
  enc, boxed, apply = _setup(name)
  params = nn.meta.unbox(boxed)
  text, mask = _batch()
  tokens, pooled, _ = apply(params, text, mask)
  assert tokens.shape == (B, L, W) and pooled.shape == (B, W)
  assert tokens.dtype == pooled.dtype == jnp.float32
  # Any ids behind the mask are invisible.
  junk = np.where(mask, text, 7).astype(np.int32)
  tokens_junk, pooled_junk, _ = apply(params, junk, mask)
  np.testing.assert_allclose(pooled_junk, pooled, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(
    np.where(mask[..., None], tokens_junk, 0),
    np.where(mask[..., None], tokens, 0),
    rtol=1e-5,
    atol=1e-5,
  )
  # Sanity: the mask is used, and real tokens matter.
  _, unmasked, _ = apply(params, junk, np.ones_like(mask))
  assert np.abs(np.asarray(unmasked[1] - pooled[1])).max() > 1e-4
  other = text.copy()
  other[:, 0] = (other[:, 0] % (V - 1)) + 1
  _, pooled_other, _ = apply(params, other, mask)
  assert np.abs(np.asarray(pooled_other - pooled)).max(axis=-1).min() > 1e-5

  # Gradients (train=True) on the batch with 5 padding tokens appended, whose
  # pooled output must equal the unpadded one.
  pad = lambda a: np.pad(a, ((0, 0), (0, 5)))

  def loss(p):
    toks, pool, _ = enc.apply(p, pad(text), pad(mask), train=True)
    return jnp.sum(pool**2) + jnp.mean(toks), pool

  grads, pooled_long = jax.jit(jax.grad(loss, has_aux=True))(params)
  np.testing.assert_allclose(pooled_long, pooled, rtol=1e-5, atol=1e-5)
  for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]:
    g = np.asarray(g)
    assert np.isfinite(g).all(), jax.tree_util.keystr(path)
    assert np.abs(g).max() > 0, jax.tree_util.keystr(path)

  # Every param carries logical axis names from the allowed set.
  specs = nn.get_partition_spec(boxed)["params"]
  flat = jax.tree_util.tree_flatten_with_path(
    specs, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec)
  )[0]
  leaves = jax.tree.leaves(boxed["params"], is_leaf=lambda x: isinstance(x, nn.Partitioned))
  assert all(isinstance(l, nn.Partitioned) for l in leaves), name
  for path, spec in flat:
    named = [n for n in spec if n]
    assert set(spec) <= ALLOWED, (jax.tree_util.keystr(path), spec)
    assert named and len(named) == len(set(named)), (jax.tree_util.keystr(path), spec)


@pytest.mark.parametrize("name", CAUSAL)
def test_causal_tokens_ignore_the_future(name):
  _, boxed, apply = _setup(name)
  params = nn.meta.unbox(boxed)
  text, mask = _batch()
  tokens, _, _ = apply(params, text, mask)
  t = 3
  later = text.copy()
  later[0, t + 1 :] = (later[0, t + 1 :] % (V - 1)) + 1
  tokens_later, _, _ = apply(params, later, mask)
  np.testing.assert_allclose(tokens_later[0, : t + 1], tokens[0, : t + 1], rtol=1e-5, atol=1e-5)
  assert np.abs(np.asarray(tokens_later[0, t + 1 :] - tokens[0, t + 1 :])).max() > 1e-5
  # Changing token t changes token t's output.
  now = text.copy()
  now[0, t] = (now[0, t] % (V - 1)) + 1
  tokens_now, _, _ = apply(params, now, mask)
  assert np.abs(np.asarray(tokens_now[0, t] - tokens[0, t])).max() > 1e-5


def test_bidirectional_transformer_sees_the_future():
  # The non-causal default is a real contrast to the causal test above.
  _, boxed, apply = _setup("tt_default_first")
  params = nn.meta.unbox(boxed)
  text, mask = _batch()
  tokens, _, _ = apply(params, text, mask)
  later = text.copy()
  later[0, 4:] = (later[0, 4:] % (V - 1)) + 1
  assert np.abs(np.asarray(apply(params, later, mask)[0][0, :4] - tokens[0, :4])).max() > 1e-5


@pytest.mark.parametrize("name", ["tt_causal_last", "lstm_last"])
def test_last_pool_is_last_real_token(name):
  _, boxed, apply = _setup(name)
  text, mask = _batch()
  tokens, pooled, _ = apply(nn.meta.unbox(boxed), text, mask)
  last = mask.sum(axis=1) - 1
  np.testing.assert_allclose(pooled, np.asarray(tokens)[np.arange(B), last], atol=1e-6)


def test_text_transformer_params_unchanged_and_sinusoidal_has_no_table():
  shapes = lambda enc: jax.tree.map(
    jnp.shape, nn.meta.unbox(jax.eval_shape(enc.init, jax.random.PRNGKey(0), *_batch()))["params"]
  )
  default = shapes(TextTransformer(**TT))
  assert sorted(default) == ["pos_embedding", "token_embed", "transformer"]
  assert default["pos_embedding"] == (16, W)
  assert sorted(default["transformer"]) == ["block0", "ln_final"]
  assert shapes(TextTransformer(**TT, causal=True, pool="last")) == default
  sin = shapes(TextTransformer(**TT, positions="sinusoidal"))
  assert "pos_embedding" not in sin and sin["transformer"] == default["transformer"]


def test_sinusoidal_allows_longer_than_max_len_and_bad_options_raise():
  text, mask = _batch()
  long = lambda a: np.pad(a, ((0, 0), (0, 20)))
  enc = TextTransformer(**TT, positions="sinusoidal")
  out = jax.eval_shape(
    lambda: enc.init_with_output(jax.random.PRNGKey(0), long(text), long(mask))[0]
  )
  assert out[1].shape == (B, W)
  with pytest.raises(ValueError, match="max_len"):
    jax.eval_shape(TextTransformer(**TT).init, jax.random.PRNGKey(0), long(text), long(mask))
  for bad in (
    TextTransformer(**TT, positions="rope"),
    TextTransformer(**TT, pool="max"),
    TextRNN(**RNN, cell="rnn"),
    TextRNN(**RNN, pool="first"),
  ):
    with pytest.raises(ValueError):
      jax.eval_shape(bad.init, jax.random.PRNGKey(0), text, mask)


def test_rnn_param_layout_and_dtype():
  text, mask = _batch()
  shapes = lambda enc: jax.tree.map(
    jnp.shape, nn.meta.unbox(jax.eval_shape(enc.init, jax.random.PRNGKey(0), text, mask))["params"]
  )
  uni = shapes(TextRNN(**RNN, depth=2))
  assert sorted(uni) == ["rnn0", "rnn1", "token_embed"]
  assert uni["rnn0"]["cell"]["ii"]["kernel"] == (W, W)
  bi = shapes(TextRNN(**RNN, cell="gru", bidirectional=True, depth=2))
  assert sorted(bi) == ["out_proj", "rnn0", "rnn1", "token_embed"]
  assert sorted(bi["rnn1"]) == ["backward_rnn", "forward_rnn"]
  assert bi["rnn1"]["forward_rnn"]["cell"]["ir"]["kernel"] == (2 * W, W)
  assert bi["out_proj"]["kernel"] == (2 * W, W)
  enc = TextRNN(**RNN, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
  (tokens, pooled, _), variables = jax.jit(enc.init_with_output)(jax.random.PRNGKey(0), text, mask)
  assert {p.dtype for p in jax.tree.leaves(nn.meta.unbox(variables))} == {jnp.dtype(jnp.bfloat16)}
  assert pooled.dtype == tokens.dtype == jnp.bfloat16
