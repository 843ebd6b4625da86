"""AudioCNN and AudioSpectrogramViT on tiny configs."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmjax.models.audio_ast import AudioSpectrogramViT, patch_mask
from cmjax.models.audio_cnn import AudioCNN

B, W, HOP, SAMPLES = 2, 16, 160, 4000  # 0.25 s -> 26 frames
FRONT = dict(sample_rate=16000, n_fft=400, hop_length=HOP, n_mels=16)
AUG = dict(num_freq_masks=1, freq_mask_width=4, num_time_masks=1, time_mask_width=5)
CNN = dict(widths=(8, 16), width=W, **FRONT, **AUG)
AST = dict(patch_time=4, patch_freq=8, width=W, depth=1, num_heads=2, mlp_dim=32, **FRONT, **AUG)
FRAMES = 1 + SAMPLES // HOP


def _tokens(name):
  if name == "cnn":
    return -(-(-(-FRAMES // 2)) // 2)
  return -(-FRAMES // 4) * (16 // 8)


def _make(name, **kw):
  return AudioCNN(**CNN, **kw) if name == "cnn" else AudioSpectrogramViT(**AST, **kw)


def _audio(seed=0, samples=SAMPLES):
  rng = np.random.default_rng(seed)
  lengths = np.array([samples, samples // 2 + 37])
  mask = np.arange(samples)[None] < lengths[:, None]
  audio = np.where(mask, rng.uniform(-0.5, 0.5, (B, samples)), 0).astype(np.float32)
  return audio, mask


ENCODERS = ["cnn", "ast"]


@pytest.fixture(scope="module", params=ENCODERS)
def encoder(request):
  enc = _make(request.param)
  audio, mask = _audio()
  boxed = jax.jit(enc.init)(jax.random.PRNGKey(0), audio, mask)
  return request.param, enc, boxed, nn.meta.unbox(boxed)


def test_shapes_and_jit(encoder):
  name, enc, _, v = encoder
  audio, mask = _audio()
  tokens, pooled, _ = jax.jit(enc.apply)(v, audio, mask)
  assert tokens.shape == (B, _tokens(name), W) and pooled.shape == (B, W)
  assert tokens.dtype == pooled.dtype == jnp.float32
  # Batch rows are independent.
  _, alone, _ = jax.jit(enc.apply)(v, audio[1:], mask[1:])
  np.testing.assert_allclose(alone[0], pooled[1], rtol=1e-5, atol=1e-5)
  assert np.isfinite(np.asarray(tokens)).all()


def _jitter(params, scale=0.2):
  """Params plus noise: zero-initialised biases would hide padding leaks."""
  rng = np.random.default_rng(42)
  return jax.tree_util.tree_map(
    lambda l: (l + scale * rng.standard_normal(l.shape)).astype(l.dtype), params
  )


def test_padding_invariance(encoder):
  name, enc, _, v = encoder
  v = _jitter(v)
  audio, mask = _audio()
  apply = jax.jit(enc.apply)
  tokens, pooled, _ = apply(v, audio, mask)
  # Append 0.3 s of masked zeros (an odd number of frames on purpose).
  pad = lambda a: np.pad(a, ((0, 0), (0, 4900)))
  tokens_long, pooled_long, _ = apply(v, pad(audio), pad(mask))
  assert tokens_long.shape[1] > tokens.shape[1]
  np.testing.assert_allclose(pooled_long, pooled, rtol=1e-5, atol=1e-5)
  # Garbage behind the mask is invisible too.
  noisy = np.where(mask, audio, 0.9).astype(np.float32)
  _, pooled_noisy, _ = apply(v, noisy, mask)
  np.testing.assert_allclose(pooled_noisy, pooled, rtol=1e-5, atol=1e-5)
  # Sanity: the mask is used, and changing the real audio changes the output.
  _, unmasked, _ = apply(v, audio, np.ones_like(mask))
  assert np.abs(np.asarray(unmasked[1] - pooled[1])).max() > 1e-3
  _, other, _ = apply(v, audio[::-1].copy(), mask)
  assert np.abs(np.asarray(other - pooled)).max() > 1e-3


def test_finite_gradients_reach_every_parameter(encoder):
  name, _, _, v = encoder
  enc = _make(name, spec_augment=True)
  audio, mask = _audio()

  def loss_fn(p):
    tokens, pooled, _ = enc.apply(
      p, audio, mask, train=True, rngs={"dropout": jax.random.PRNGKey(1)}
    )
    return jnp.sum(pooled**2) + jnp.mean(tokens)

  grads = jax.jit(jax.grad(loss_fn))(v)
  flat = jax.tree_util.tree_flatten_with_path(grads)[0]
  assert all(np.isfinite(np.asarray(g)).all() for _, g in flat)
  zero = [jax.tree_util.keystr(p) for p, g in flat if not np.abs(np.asarray(g)).max() > 0]
  assert not zero, zero


def test_spec_augment_only_in_training(encoder):
  name, _, _, v = encoder
  plain, aug = _make(name), _make(name, spec_augment=True)
  audio, mask = _audio()
  r0, r1 = jax.random.PRNGKey(0), jax.random.PRNGKey(1)
  # Eager: for a model this small, cheaper than compiling five variants.
  run = lambda model, train, rngs=None: model.apply(v, audio, mask, train=train, rngs=rngs).pooled
  ref = run(plain, False)
  # Off at evaluation, and off in training unless asked for.
  np.testing.assert_array_equal(run(aug, False), ref)
  np.testing.assert_allclose(run(plain, True, {"dropout": r0}), ref, atol=1e-6)
  # On in training: changes the output, deterministically given the rng.
  a = run(aug, True, {"dropout": r0})
  b = run(aug, True, {"dropout": r0})
  c = run(aug, True, {"dropout": r1})
  np.testing.assert_array_equal(a, b)
  assert np.abs(np.asarray(a - ref)).max() > 1e-4
  assert np.abs(np.asarray(a - c)).max() > 1e-4
  # A dedicated 'spec_augment' stream takes precedence over 'dropout'.
  d = run(aug, True, {"dropout": r0, "spec_augment": r1})
  np.testing.assert_allclose(d, c, atol=1e-6)


def test_every_param_has_logical_names(encoder):
  _, _, boxed, _ = encoder
  leaves = jax.tree_util.tree_leaves(
    boxed["params"], is_leaf=lambda x: isinstance(x, nn.Partitioned)
  )
  assert leaves and all(isinstance(l, nn.Partitioned) for l in leaves)
  specs = nn.get_partition_spec(boxed)["params"]
  allowed = {"embed", "mlp", "heads", "head_dim", "vocab", "conv_in", "mels", "pos", None}
  flat = jax.tree_util.tree_flatten_with_path(
    specs, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec)
  )[0]
  unboxed = nn.meta.unbox(boxed)["params"]
  for path, spec in flat:
    key = jax.tree_util.keystr(path)
    named = [n for n in spec if n]
    assert set(spec) <= allowed, (key, spec)
    assert len(named) == len(set(named)), (key, spec)
    assert named, f"{key} has no logical axis names"
    leaf = unboxed
    for k in path:
      leaf = leaf[k.key]
    assert len(spec) == np.ndim(leaf), (key, spec)


def test_cnn_tokens_zero_on_padding():
  enc = AudioCNN(**CNN)
  audio, mask = _audio()
  v = jax.jit(enc.init)(jax.random.PRNGKey(0), audio, mask)
  tokens, _, _ = enc.apply(_jitter(nn.meta.unbox(v)), audio, mask)
  # Row 1 holds 2037 samples -> 13 valid frames -> 7 -> 4 valid tokens.
  assert np.abs(np.asarray(tokens[1, 4:])).max() == 0
  assert np.abs(np.asarray(tokens[1, :4])).min(axis=-1).max() > 0


def test_patch_mask_and_config_errors():
  fm = np.array([[1, 1, 1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 0, 0, 0, 0]], bool)
  np.testing.assert_array_equal(patch_mask(fm, 4, 2), [[1, 1, 1, 1], [1, 1, 0, 0]])
  with pytest.raises(ValueError, match="multiple"):
    patch_mask(fm[:, :6], 4, 2)
  audio, mask = _audio()
  with pytest.raises(ValueError, match="patch_freq"):
    AudioSpectrogramViT(**{**AST, "patch_freq": 5}).init(jax.random.PRNGKey(0), audio, mask)
  with pytest.raises(ValueError, match="odd"):
    AudioCNN(**{**CNN, "kernel_size": 4}).init(jax.random.PRNGKey(0), audio, mask)
