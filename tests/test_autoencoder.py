"""The cross-modal autoencoder: every direction decoded, missing modalities
counted nowhere, the product of experts as defined, and training lowers the
reconstruction errors."""

import jax
import numpy as np
import optax
import pytest

from cmjax.data import spec as spec_lib
from cmjax.models.autoencoder import CrossModalAutoencoder
from cmjax.objectives.reconstruction import ReconstructionObjective

TEXT_LEN, VOCAB, SAMPLES = 8, 12, 3200
SPEC = spec_lib.ElementSpec(
  dataset="toy",
  modalities=("image", "text", "audio"),
  features={
    "image": spec_lib.Feature((16, 16, 3), "uint8"),
    "text": spec_lib.Feature((TEXT_LEN,), "int32"),
    "text_mask": spec_lib.Feature((TEXT_LEN,), "bool"),
    "audio": spec_lib.Feature((SAMPLES,), "float32"),
    "audio_mask": spec_lib.Feature((SAMPLES,), "bool"),
  },
  vocab_size=VOCAB,
  sample_rate=16000,
)
SMALL = dict(width=16, depth=1, num_heads=2, mlp_dim=32)


def _model(joint="none", modalities=("image", "text", "audio")):
  return CrossModalAutoencoder(
    embed_dim=8,
    normalize=False,
    modalities=modalities,
    image=dict(name="vit", patch_size=8, **SMALL),
    text=dict(name="transformer", **SMALL),
    audio=dict(name="transformer", n_fft=400, hop_length=320, n_mels=16, **SMALL),
    decoders=dict(image=dict(patch_size=4, **SMALL), text=SMALL, audio=dict(chunk=4, **SMALL)),
    joint=joint,
    data=SPEC,
  )


def _batch(seed=0, n=6):
  rng = np.random.default_rng(seed)
  text = rng.integers(4, VOCAB, size=(n, TEXT_LEN)).astype(np.int32)
  text[:, 0] = 2
  mask = np.arange(TEXT_LEN)[None] < rng.integers(3, TEXT_LEN + 1, size=(n, 1))
  audio_mask = np.arange(SAMPLES)[None] < rng.integers(1600, SAMPLES + 1, size=(n, 1))
  return {
    "image": rng.integers(0, 256, size=(n, 16, 16, 3)).astype(np.uint8),
    "text": np.where(mask, text, 0),
    "text_mask": mask,
    "audio": np.where(audio_mask, rng.normal(size=(n, SAMPLES)) * 0.1, 0).astype(np.float32),
    "audio_mask": audio_mask,
    "image_present": np.array([True, True, False, True, True, True][:n]),
    "audio_present": np.array([True, False, True, True, True, True][:n]),
  }


def _objective():
  return ReconstructionObjective(dict(type="reconstruction", cross_weight=0.5), ctx=None)


def test_every_direction_is_decoded_and_absent_rows_do_not_count():
  model, batch = _model(), _batch()
  variables = jax.jit(model.init)(jax.random.key(0), batch)
  apply = jax.jit(model.apply)
  out = apply(variables, batch)
  assert out["recon/text_to_image"].shape == (6, 16, 16, 3)
  assert out["recon/image_to_text"].shape == (6, TEXT_LEN - 1, VOCAB)
  assert out["recon/text_to_audio"].shape == out["recon_target/audio"].shape
  assert len([k for k in out if k.startswith("recon/")]) == 9
  np.testing.assert_array_equal(
    out["recon_present/image_to_audio"], batch["image_present"] & batch["audio_present"]
  )
  loss, metrics = _objective()(out, batch, 0)
  junk = dict(batch)
  junk["image"] = np.where(batch["image_present"][:, None, None, None], batch["image"], 7)
  junk["audio"] = np.where(batch["audio_present"][:, None], batch["audio"], 0.9)
  junk_loss, _ = _objective()(apply(variables, junk), junk, 0)
  np.testing.assert_allclose(float(loss), float(junk_loss), rtol=1e-5)
  assert {"error/image_to_image", "error/audio_to_text", "text_accuracy/text_to_text"} <= set(
    metrics
  )


def test_product_of_experts_is_the_precision_weighted_mean():
  model = _model("poe", ("image", "text"))
  batch = {k: v for k, v in _batch(1).items() if not k.startswith("audio")}
  variables = jax.jit(model.init)(jax.random.key(0), batch)
  out = jax.jit(model.apply)(variables, batch)

  def logvars_of(m, b):
    _, encoded = m._embed_batch(b, False)
    return {k: m.logvar_heads[k](e.pooled) for k, e in encoded.items()}

  logvars = jax.jit(lambda v: model.apply(v, batch, method=logvars_of))(variables)
  mus = {m: np.asarray(out[m]) for m in logvars}
  logvars = {m: np.asarray(v) for m, v in logvars.items()}
  present = {"image": batch["image_present"], "text": np.ones(6, bool)}
  precision = 1.0 + sum(present[m][:, None] * np.exp(-logvars[m]) for m in mus)
  joint = sum(present[m][:, None] * np.exp(-logvars[m]) * mus[m] for m in mus) / precision
  # The decoder of the joint code, run on the expected code, gives the output.
  decode = lambda m, z: m._decode("image", z, batch, False)
  want = jax.jit(lambda v, z: model.apply(v, z, method=decode))(variables, joint.astype(np.float32))
  np.testing.assert_allclose(out["recon/joint_to_image"], want, atol=1e-5)
  assert np.isfinite(float(out["kl"])) and float(out["kl"]) > 0
  with pytest.raises(ValueError, match="joint='moe'"):
    _model("moe", ("image", "text")).init(jax.random.key(0), batch)


def test_training_lowers_every_reconstruction_error():
  model = _model(modalities=("image", "text"))
  batch = {k: v for k, v in _batch(2).items() if not k.startswith("audio")}
  variables = jax.jit(model.init)(jax.random.key(1), batch)
  objective = _objective()
  tx = optax.adam(3e-3)
  opt = tx.init(variables["params"])

  def loss_fn(params):
    return objective(model.apply({"params": params}, batch), batch, 0)

  @jax.jit
  def step(params, opt):
    (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt = tx.update(grads, opt)
    return optax.apply_updates(params, updates), opt, metrics

  params = variables["params"]
  _, _, first = step(params, opt)
  for _ in range(60):
    params, opt, metrics = step(params, opt)
  for key in ("error/image_to_image", "error/text_to_text", "error/text_to_image"):
    assert float(metrics[key]) < 0.8 * float(first[key]), key


def test_reconstruction_evaluator_reports_every_direction_and_a_grid():
  from cmjax.evaluators.reconstruction import ReconstructionEvaluator
  from tests import helpers

  config = helpers.load_config("shapes_contrastive.py", "tiny,loss=autoencoder")
  ctx = helpers.eval_context(config)
  entry = dict(config.evals.reconstruction, num_examples=20, batch_size=8, grid=3)
  ev = ReconstructionEvaluator(entry, ctx)
  batch = {k: v[:2] for k, v in ev.arrays.items()}
  variables = jax.jit(ctx.model.init)(jax.random.key(0), batch)
  metrics = dict(ev.run(variables))
  assert len([k for k in metrics if k.startswith("reconstruction/error/")]) == 9
  assert ev.num_batches == 2  # 20 examples: two whole batches of 8
  grid = ev.pictures()["grid"]
  size = config.data.image_size
  assert grid.shape == (4 * size, 3 * size, 3) and grid.dtype == np.uint8  # originals + 3 sources
  np.testing.assert_array_equal(grid[:size, :size], ev.arrays["image"][0])
