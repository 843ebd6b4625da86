"""The encoder contract, for every registered encoder: shapes, masks, jit, gradients."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmjax.models import encoders

B, W = 2, 16
VOCAB, L, T = 50, 12, 8000
TINY_VIT = dict(patch_size=8, width=W, depth=1, num_heads=2, mlp_dim=32)

# A small configuration of every registered encoder. A new encoder must be
# added here (test_every_registered_encoder_has_a_test_config fails otherwise).
SMALL = {
  ("image", "vit"): TINY_VIT,
  ("image", "resnet"): dict(features=(8, W), blocks=(1, 1), num_groups=4),
  ("text", "transformer"): dict(
    vocab_size=VOCAB, max_len=L, width=W, depth=1, num_heads=2, mlp_dim=32
  ),
  ("text", "rnn"): dict(vocab_size=VOCAB, width=W),
  ("text", "bert"): dict(vocab_size=VOCAB, max_len=32, width=W, depth=1, num_heads=2, mlp_dim=32),
  ("audio", "transformer"): dict(n_mels=16, width=W, depth=1, num_heads=2, mlp_dim=32),
  ("audio", "cnn"): dict(n_mels=16, widths=(8, W), width=W),
  ("audio", "ast"): dict(n_mels=16, patch_freq=8, width=W, depth=1, num_heads=2, mlp_dim=32),
  ("video", "frames"): dict(frame_encoder=TINY_VIT, width=W, depth=1, num_heads=2, mlp_dim=32),
  ("video", "tubelet_vit"): dict(patch_size=8, width=W, depth=1, num_heads=2, mlp_dim=32),
}
# Extra variants worth running through the same contract.
VARIANTS = {
  "image/resnet_batchnorm": (("image", "resnet"), dict(SMALL[("image", "resnet")], norm="batch")),
  "video/frames_of_resnet": (
    ("video", "frames"),
    dict(
      SMALL[("video", "frames")],
      frame_encoder=dict(name="resnet", features=(8,), blocks=(1,), num_groups=4),
    ),
  ),
  "text/bidirectional_gru": (
    ("text", "rnn"),
    dict(vocab_size=VOCAB, width=W, cell="gru", bidirectional=True),
  ),
}
CASES = {f"{m}/{n}": ((m, n), kw) for (m, n), kw in SMALL.items()} | VARIANTS


def _inputs(modality: str, seed: int = 0) -> tuple[np.ndarray, ...]:
  rng = np.random.default_rng(seed)
  if modality == "image":
    return (rng.integers(0, 256, (B, 32, 32, 3), dtype=np.uint8),)
  if modality == "video":
    return (rng.integers(0, 256, (B, 4, 32, 32, 3), dtype=np.uint8),)
  if modality == "text":
    mask = np.arange(L)[None] < np.array([[L], [7]])
    return (np.where(mask, rng.integers(2, VOCAB, (B, L)), 0).astype(np.int32), mask)
  mask = np.arange(T)[None] < np.array([[T], [5000]])
  return (np.where(mask, rng.normal(0, 0.1, (B, T)), 0).astype(np.float32), mask)


_BUILT = {}


def _build(case: str):
  """(module, variables, jitted eval apply), built once per case."""
  if case not in _BUILT:
    (modality, name), kw = CASES[case]
    enc = encoders.build_encoder(modality, dict(kw, name=name))
    variables = nn.meta.unbox(jax.jit(enc.init)(jax.random.key(0), *_inputs(modality)))
    _BUILT[case] = (enc, variables, jax.jit(enc.apply))
  return _BUILT[case]


def test_every_registered_encoder_has_a_test_config():
  registered = {(m, n) for m, names in encoders.known_encoders().items() for n in names}
  assert registered == set(SMALL)
  assert set(encoders.known_encoders()) == set(encoders.MODALITY_INPUTS)


@pytest.mark.parametrize("case", sorted(CASES))
def test_output_shapes_dtypes_and_jit(case):
  (modality, _), _ = CASES[case]
  enc, variables, apply = _build(case)
  out = apply(variables, *_inputs(modality))
  assert isinstance(out, encoders.EncoderOutput)
  b, n, d = out.tokens.shape
  assert b == B and n >= 1
  assert out.pooled.shape == (B, d)
  assert out.mask.shape == (B, n) and out.mask.dtype == jnp.bool_
  assert np.all(np.isfinite(out.tokens)) and np.all(np.isfinite(out.pooled))
  # Eager and jitted agree.
  eager = enc.apply(variables, *_inputs(modality))
  np.testing.assert_allclose(eager.pooled, out.pooled, atol=1e-5)


@pytest.mark.parametrize("case", sorted(CASES))
def test_mask_is_honoured(case):
  (modality, _), _ = CASES[case]
  _, variables, apply = _build(case)
  x = _inputs(modality)
  out = apply(variables, *x)
  if len(x) == 1:  # image / video: every token is real
    assert np.all(out.mask)
    return
  values, mask = x
  # Row 1 is padded: its mask has fewer True tokens than row 0's.
  assert out.mask[0].sum() > out.mask[1].sum() > 0
  # Junk behind the input mask changes neither the pooled vector nor the
  # tokens the output mask marks real.
  rng = np.random.default_rng(1)
  junk = (
    rng.integers(2, VOCAB, values.shape) if modality == "text" else rng.normal(0, 1, values.shape)
  )
  moved = apply(variables, np.where(mask, values, junk).astype(values.dtype), mask)
  np.testing.assert_allclose(moved.pooled, out.pooled, atol=1e-5)
  np.testing.assert_array_equal(moved.mask, out.mask)
  real = np.asarray(out.mask)[..., None]
  np.testing.assert_allclose(
    np.where(real, moved.tokens, 0), np.where(real, out.tokens, 0), atol=1e-5
  )
  # ...while changing a real input does change the output.
  changed = apply(variables, np.where(mask, junk, values).astype(values.dtype), mask)
  assert np.max(np.abs(changed.pooled - out.pooled)) > 1e-4


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradients_are_finite_and_reach_the_parameters(case):
  (modality, _), _ = CASES[case]
  enc, variables, _ = _build(case)
  # Jittered away from init, where zero-initialised scales (ResNet's last norm
  # of each residual branch) legitimately block some gradients.
  leaves, treedef = jax.tree_util.tree_flatten(variables["params"])
  keys = jax.random.split(jax.random.key(3), len(leaves))
  params = treedef.unflatten(
    [p + 0.1 * jax.random.normal(k, p.shape, p.dtype) for p, k in zip(leaves, keys)]
  )
  state = {k: v for k, v in variables.items() if k != "params"}
  x = _inputs(modality)

  def loss(p):
    out, _ = enc.apply(
      {"params": p, **state},
      *x,
      train=True,
      rngs={"dropout": jax.random.key(1)},
      mutable=list(state),
    )
    return jnp.sum(out.pooled**2) + jnp.sum(out.tokens * out.mask[..., None])

  grads = jax.jit(jax.grad(loss))(params)
  leaves = jax.tree_util.tree_leaves(grads)
  assert leaves and all(np.all(np.isfinite(g)) for g in leaves)
  zero = [
    jax.tree_util.keystr(path)
    for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]
    if not np.any(g)
  ]
  assert not zero, f"no gradient reaches {zero}"


def test_unknown_encoder_or_key_names_the_config_key():
  with pytest.raises(ValueError, match=r"unknown image encoder 'vgg'.*'resnet'"):
    encoders.build_encoder("image", dict(name="vgg"))
  with pytest.raises(ValueError, match=r"config.model.image has keys \['patch_size'\].*'resnet'"):
    encoders.build_encoder("image", dict(name="resnet", patch_size=8))
  with pytest.raises(ValueError, match="unknown modality"):
    encoders.build_encoder("smell", {})
