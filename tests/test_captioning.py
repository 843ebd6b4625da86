"""The captioner: generation with and without the cache, the captioning loss
(parity with torch's cross-entropy), rows without a caption. End to end:
tests/test_generation_e2e.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmjax import sequence_losses
from cmjax.data import spec as spec_lib
from cmjax.models.captioner import Captioner, Generator
from cmjax.objectives.captioning import CaptioningObjective

TEXT_LEN, VOCAB = 9, 13
SPEC = spec_lib.ElementSpec(
  dataset="toy",
  modalities=("image", "text"),
  features={
    "image": spec_lib.Feature((16, 16, 3), "uint8"),
    "text": spec_lib.Feature((TEXT_LEN,), "int32"),
    "text_mask": spec_lib.Feature((TEXT_LEN,), "bool"),
  },
  vocab_size=VOCAB,
)


def _model(**kw):
  return Captioner(
    embed_dim=8,
    modalities=("image",),
    image=dict(name="vit", patch_size=8, width=16, depth=1, num_heads=2, mlp_dim=32, pool="mean"),
    decoder=dict(width=16, depth=2, num_heads=2, mlp_dim=32),
    data=SPEC,
    **kw,
  )


def _batch(seed=0, n=4):
  rng = np.random.default_rng(seed)
  text = rng.integers(4, VOCAB, size=(n, TEXT_LEN)).astype(np.int32)
  text[:, 0] = 2
  mask = np.arange(TEXT_LEN)[None] < rng.integers(3, TEXT_LEN + 1, size=(n, 1))
  return {
    "image": rng.integers(0, 256, size=(n, 16, 16, 3)).astype(np.uint8),
    "text": np.where(mask, text, 0),
    "text_mask": mask,
  }


def test_generation_is_the_same_with_and_without_the_cache():
  model, batch = _model(), _batch()
  variables = model.init(jax.random.key(0), batch)
  out = model.apply(variables, batch)
  assert out["caption_logits"].shape == (4, TEXT_LEN - 1, VOCAB)
  for beam in (1, 3):
    cached = Generator(model, beam_size=beam)(variables, batch["image"])
    plain = Generator(model, beam_size=beam, cache=False)(variables, batch["image"])
    np.testing.assert_array_equal(cached, plain)
    assert cached.shape == (4, TEXT_LEN) and (np.asarray(cached)[:, 0] == 2).all()
  with pytest.raises(ValueError, match="exceeds"):
    Generator(model, max_len=TEXT_LEN + 1)
  with pytest.raises(ValueError, match="source='text'"):
    _model(source="text").init(jax.random.key(0), batch)


def test_token_cross_entropy_equals_torch():
  torch = pytest.importorskip("torch")
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(3, 5, 7)).astype(np.float32)
  targets = rng.integers(0, 7, size=(3, 5))
  weights = rng.random((3, 5)) > 0.3
  for smoothing in (0.0, 0.1):
    ours, metrics = sequence_losses.token_cross_entropy(
      jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(weights), smoothing
    )
    masked = np.where(weights, targets, -100)
    want = torch.nn.functional.cross_entropy(
      torch.tensor(logits).reshape(-1, 7),
      torch.tensor(masked).reshape(-1),
      ignore_index=-100,
      label_smoothing=smoothing,
    )
    np.testing.assert_allclose(float(ours), want.item(), rtol=1e-5)
  assert float(metrics["tokens"]) == weights.sum()


def test_rows_without_a_caption_do_not_count():
  objective = CaptioningObjective(dict(type="captioning"), ctx=None)
  rng = np.random.default_rng(2)
  batch = _batch(2, n=4)
  logits = jnp.asarray(rng.normal(size=(4, TEXT_LEN - 1, VOCAB)), jnp.float32)
  present = jnp.asarray([True, False, True, True])
  loss, _ = objective({"caption_logits": logits, "caption_present": present}, batch, 0)
  keep = np.asarray(present)
  sub = {k: v[keep] for k, v in batch.items()}
  ref, _ = objective({"caption_logits": logits[keep]}, sub, 0)
  np.testing.assert_allclose(float(loss), float(ref), rtol=1e-6)
  with pytest.raises(ValueError, match="label_smoothing"):
    CaptioningObjective(dict(type="captioning", label_smoothing=1.5), ctx=None)


def test_captioned_grid_writes_each_caption_under_its_image():
  from cmjax.evaluators.captioning import captioned_grid

  images = np.zeros((3, 32, 32, 3), np.uint8)
  grid = captioned_grid(images, ["a red circle", "", "a long caption " * 10])
  assert grid.shape[1] == 3 * 64 and grid.shape[0] > 64
  text = grid[64:]  # white paper with dark letters under the first and third images only
  ink = (text < 128).all(-1)
  assert ink[:, :64].any() and not ink[:, 64:128].any() and ink[:, 128:].any()
