"""Encoders and the tri-modal contrastive model on tiny configs."""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmjax.models import get_model, known_models
from cmjax.models.audio_encoder import AudioTransformer
from cmjax.models.text_encoder import TextTransformer
from cmjax.models.transformer import Transformer
from cmjax.models.vit import ViT

B, W = 2, 16
TINY = dict(width=W, depth=1, num_heads=2, mlp_dim=32)
IMAGE = dict(patch_size=8, pool="mean", **TINY)
TEXT = dict(vocab_size=40, max_len=16, **TINY)
AUDIO = dict(sample_rate=16000, n_fft=400, hop_length=160, n_mels=16, **TINY)
SAMPLES = 4000  # 0.25 s


def _batch(seed=0, text_len=8, samples=SAMPLES):
  rng = np.random.default_rng(seed)
  lengths = np.array([text_len, text_len // 2])
  text_mask = np.arange(text_len)[None] < lengths[:, None]
  audio_len = np.array([samples, samples // 2])
  audio_mask = np.arange(samples)[None] < audio_len[:, None]
  return {
    "image": rng.integers(0, 256, (B, 32, 32, 3), dtype=np.uint8),
    "text": np.where(text_mask, rng.integers(1, 40, (B, text_len)), 0).astype(np.int32),
    "text_mask": text_mask,
    "audio": np.where(audio_mask, rng.uniform(-0.5, 0.5, (B, samples)), 0).astype(np.float32),
    "audio_mask": audio_mask,
  }


@pytest.fixture(scope="module")
def model_and_vars():
  model = get_model(
    "tri_contrastive",
    embed_dim=8,
    image=IMAGE,
    text=TEXT,
    audio=AUDIO,
    logit_scale_init=np.log(10.0),
    logit_bias_init=-10.0,
  )
  variables = model.init(jax.random.PRNGKey(0), _batch())
  return model, nn.meta.unbox(variables), variables


def test_transformer_shapes_and_mask():
  x = jax.random.normal(jax.random.PRNGKey(0), (B, 5, W))
  mask = jnp.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
  t = Transformer(depth=2, num_heads=2, mlp_dim=32, dropout_rate=0.5)
  v = t.init(jax.random.PRNGKey(1), x, mask)
  y = t.apply(v, x, mask)
  assert y.shape == x.shape
  # Padded tokens do not influence valid ones.
  x2 = x.at[0, 3:].set(50.0)
  np.testing.assert_allclose(t.apply(v, x2, mask)[0, :3], y[0, :3], atol=1e-5)
  # Dropout is active only when not deterministic.
  y_drop = t.apply(v, x, mask, deterministic=False, rngs={"dropout": jax.random.PRNGKey(2)})
  assert np.abs(np.asarray(y_drop - y)).max() > 1e-3


@pytest.mark.parametrize("pool", ["mean", "cls"])
def test_vit_shapes(pool):
  img = _batch()["image"]
  vit = ViT(**{**IMAGE, "pool": pool})
  v = vit.init(jax.random.PRNGKey(0), img)
  tokens, pooled, _ = vit.apply(v, img)
  assert tokens.shape == (B, 16 + (pool == "cls"), W)
  assert pooled.shape == (B, W)
  # uint8 and the equivalent float in [0, 1] give the same result.
  _, pooled_f, _ = vit.apply(v, img.astype(np.float32) / 255.0)
  np.testing.assert_allclose(pooled, pooled_f, atol=1e-5)


def test_vit_map_pooling_attends_over_tokens():
  img = _batch()["image"]
  vit = ViT(**{**IMAGE, "pool": "map"})
  v = vit.init(jax.random.PRNGKey(0), img)
  assert "map_head" in v["params"] and "probe" in v["params"]["map_head"]
  tokens, pooled, _ = vit.apply(v, img)
  assert tokens.shape == (B, 16, W) and pooled.shape == (B, W)
  # The pooled vector is not the token mean, and it moves with the probe.
  assert not np.allclose(pooled, tokens.mean(axis=1), atol=1e-3)
  params = jax.tree_util.tree_map(lambda a: a, nn.meta.unbox(v["params"]))
  params["map_head"]["probe"] = params["map_head"]["probe"] + 1.0
  _, moved, _ = vit.apply({"params": params}, img)
  assert not np.allclose(pooled, moved, atol=1e-4)
  with pytest.raises(ValueError, match="pool"):
    ViT(**{**IMAGE, "pool": "max"}).init(jax.random.PRNGKey(0), img)


def test_vit_conv_stem():
  img = _batch()["image"]
  vit = ViT(**{**IMAGE, "stem": "conv"})
  v = vit.init(jax.random.PRNGKey(0), img)
  tokens, pooled, _ = vit.apply(v, img)
  assert tokens.shape == (B, 16, W) and pooled.shape == (B, W)
  convs = sorted(k for k in v["params"] if k.startswith("stem_conv"))
  assert convs == ["stem_conv0", "stem_conv1", "stem_conv2"]  # 8 = 2**3
  assert "patch_embed" not in v["params"]
  # Each 8x8 patch's token depends on pixels outside it (3x3 receptive fields
  # overlap), unlike the linear patch stem.
  img2 = img.copy()
  img2[:, 8, 8] = 255 - img2[:, 8, 8]
  t2, _, _ = vit.apply(v, img2)
  changed = np.abs(np.asarray(t2 - tokens)).max(axis=(0, 2)) > 0
  assert changed.sum() > 1
  with pytest.raises(ValueError, match="power-of-two"):
    ViT(**{**IMAGE, "patch_size": 6, "stem": "conv"}).init(jax.random.PRNGKey(0), img[:, :30, :30])
  with pytest.raises(ValueError, match="stem"):
    ViT(**{**IMAGE, "stem": "resnet"}).init(jax.random.PRNGKey(0), img)


def test_text_padding_invariance():
  b = _batch()
  enc = TextTransformer(**TEXT)
  v = enc.init(jax.random.PRNGKey(0), b["text"], b["text_mask"])
  tokens, pooled, _ = enc.apply(v, b["text"], b["text_mask"])
  assert tokens.shape == (B, 8, W) and pooled.shape == (B, W)
  pad = lambda a: np.pad(a, ((0, 0), (0, 5)))
  _, pooled_long, _ = enc.apply(v, pad(b["text"]), pad(b["text_mask"]))
  np.testing.assert_allclose(pooled_long, pooled, rtol=1e-5, atol=1e-5)
  # Sanity: the mask is actually used (unmasking the padding changes row 1).
  _, unmasked, _ = enc.apply(v, b["text"], np.ones_like(b["text_mask"]))
  assert np.abs(np.asarray(unmasked[1] - pooled[1])).max() > 1e-4


def test_audio_padding_invariance():
  b = _batch()
  enc = AudioTransformer(**AUDIO)
  v = enc.init(jax.random.PRNGKey(0), b["audio"], b["audio_mask"])
  apply = jax.jit(enc.apply)
  tokens, pooled, _ = apply(v, b["audio"], b["audio_mask"])
  frames = 1 + SAMPLES // 160
  assert tokens.shape == (B, -(-(-(-frames // 2)) // 2), W) and pooled.shape == (B, W)
  # Append 0.3 s of masked zeros (odd amount of frames on purpose).
  pad = lambda a: np.pad(a, ((0, 0), (0, 4900)))
  _, pooled_long, _ = apply(v, pad(b["audio"]), pad(b["audio_mask"]))
  np.testing.assert_allclose(pooled_long, pooled, rtol=1e-4, atol=1e-4)
  # Garbage behind the mask is invisible too.
  noisy = np.where(b["audio_mask"], b["audio"], 0.9).astype(np.float32)
  _, pooled_noisy, _ = apply(v, noisy, b["audio_mask"])
  np.testing.assert_allclose(pooled_noisy, pooled, rtol=1e-4, atol=1e-4)
  # Sanity: changing real audio does change the embedding.
  _, other, _ = apply(v, b["audio"][::-1].copy(), b["audio_mask"])
  assert np.abs(np.asarray(other - pooled)).max() > 1e-3


def test_full_model_outputs(model_and_vars):
  model, params, _ = model_and_vars
  out = model.apply(params, _batch())
  assert set(out) == {"image", "text", "audio", "logit_scale", "logit_bias"}
  for m in ("image", "text", "audio"):
    assert out[m].shape == (B, 8) and out[m].dtype == jnp.float32
    np.testing.assert_allclose(np.linalg.norm(out[m], axis=-1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(out["logit_scale"], np.log(10.0), rtol=1e-6)
  np.testing.assert_allclose(out["logit_bias"], -10.0)


def test_encode_methods_match_call(model_and_vars):
  model, params, _ = model_and_vars
  b = _batch()
  out = model.apply(params, b)
  np.testing.assert_allclose(
    model.apply(params, b["image"], method="encode_image"), out["image"], atol=1e-6
  )
  np.testing.assert_allclose(
    model.apply(params, b["text"], b["text_mask"], method=model.encode_text), out["text"], atol=1e-6
  )
  np.testing.assert_allclose(
    model.apply(params, b["audio"], b["audio_mask"], method=model.encode_audio),
    out["audio"],
    atol=1e-6,
  )


def test_subset_of_modalities(model_and_vars):
  model, params, _ = model_and_vars
  b = _batch()
  out = model.apply(
    params,
    {"image": b["image"], "audio": b["audio"], "audio_mask": b["audio_mask"], "label": np.zeros(B)},
  )
  assert set(out) == {"image", "audio", "logit_scale", "logit_bias"}


def test_model_text_padding_invariance(model_and_vars):
  model, params, _ = model_and_vars
  b = _batch()
  longer = _batch(text_len=8)
  longer["text"] = np.pad(b["text"], ((0, 0), (0, 4)))
  longer["text_mask"] = np.pad(b["text_mask"], ((0, 0), (0, 4)))
  np.testing.assert_allclose(
    model.apply(params, longer)["text"], model.apply(params, b)["text"], atol=1e-5
  )


@pytest.mark.parametrize(
  "mutate,err,match",
  [
    (lambda b: b.pop("text_mask"), KeyError, "text_mask"),
    (lambda b: b.pop("audio_mask"), KeyError, "audio_mask"),
    (
      lambda b: b.update(image=b["image"][..., :1]),
      ValueError,
      r"'image'.*3 channels.*\(2, 32, 32, 1\)",
    ),
    (lambda b: b.update(image=b["image"][0]), ValueError, r"'image'.*rank 4.*\(32, 32, 3\)"),
    (lambda b: b.update(text_mask=b["text_mask"][:, :3]), ValueError, "text_mask"),
    (lambda b: b.update(audio=b["audio"][:, None]), ValueError, "'audio'.*rank 2"),
    (lambda b: [b.pop(k) for k in list(b)], ValueError, "none of the model modalities"),
  ],
)
def test_bad_batches(model_and_vars, mutate, err, match):
  model, params, _ = model_and_vars
  b = _batch()
  mutate(b)
  with pytest.raises(err, match=match):
    model.apply(params, b)


def test_registry_errors():
  assert "tri_contrastive" in known_models()
  with pytest.raises(ValueError, match="tri_contrastive"):
    get_model("no_such_model")


def test_partition_annotations(model_and_vars):
  _, _, boxed = model_and_vars
  specs = nn.get_partition_spec(boxed)["params"]
  allowed = {"embed", "mlp", "heads", "head_dim", "vocab", "patch", "conv_in", "mels", "pos", None}
  flat = jax.tree_util.tree_flatten_with_path(
    specs, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec)
  )[0]
  names = {jax.tree_util.keystr(p): tuple(s) for p, s in flat}
  for path, spec in names.items():
    assert set(spec) <= allowed, (path, spec)
    assert len([n for n in spec if n]) == len(set(n for n in spec if n)), (path, spec)
    if path.endswith("['kernel']") or path.endswith("['embedding']"):
      assert any(spec), f"{path} has no logical axis names"
  assert names["['text_encoder']['token_embed']['embedding']"] == ("vocab", "embed")
  assert names["['image_encoder']['pos_embedding']"] == ("pos", "embed")
  assert names["['logit_scale']"] == ()
  # Every array param is annotated (boxed) except the scalars.
  leaves = jax.tree_util.tree_leaves(
    boxed["params"], is_leaf=lambda x: isinstance(x, nn.Partitioned)
  )
  unboxed = [l for l in leaves if not isinstance(l, nn.Partitioned)]
  assert all(np.ndim(l) == 0 for l in unboxed)


def test_gradients_reach_every_parameter(model_and_vars):
  model, params, _ = model_and_vars
  from cmjax.losses import multimodal_contrastive_loss

  def loss_fn(p):
    return multimodal_contrastive_loss(model.apply(p, _batch(), train=True), kind="siglip")[0]

  grads = jax.jit(jax.grad(loss_fn))(params)
  flat = jax.tree_util.tree_flatten_with_path(grads)[0]
  zero = [jax.tree_util.keystr(p) for p, g in flat if not np.abs(np.asarray(g)).max() > 0]
  assert not zero, zero


def test_compute_dtype_keeps_float32_params_and_outputs():
  # The trainer passes dtype as a string; bfloat16 compute must keep params f32.
  model = get_model(
    "tri_contrastive",
    embed_dim=8,
    image=IMAGE,
    text=TEXT,
    modalities=("image", "text"),
    dtype="bfloat16",
  )
  b = _batch()
  del b["audio"], b["audio_mask"]
  params = nn.meta.unbox(model.init(jax.random.PRNGKey(0), b))
  assert {x.dtype for x in jax.tree.leaves(params)} == {jnp.dtype("float32")}
  out = model.apply(params, b)
  assert out["image"].dtype == out["text"].dtype == jnp.float32
  np.testing.assert_allclose(np.linalg.norm(out["text"], axis=-1), 1.0, rtol=1e-5)
  # ... while the matmuls inside do run in bfloat16.
  jaxpr = str(jax.make_jaxpr(model.apply)(params, b))
  assert re.search(r"bf16\[[\d,]*\] = dot_general", jaxpr)
  # Audio is not a modality of this model: an audio-only batch is rejected.
  with pytest.raises(ValueError, match="none of the model modalities"):
    model.apply(params, {"audio": _batch()["audio"], "audio_mask": _batch()["audio_mask"]})


def test_present_flags_pass_through(model_and_vars):
  model, params, _ = model_and_vars
  b = _batch()
  b["audio_present"] = np.array([True, False])
  out = model.apply(params, b)
  np.testing.assert_array_equal(out["audio_present"], [True, False])
  assert "image_present" not in out
