"""The PyTorch reference of the throughput benchmark is the same model as cmjax's.

Same weights and batch: the same CLIP loss; then the same train steps
(clipping, AdamW, schedule, weight-decay mask): the same losses and parameters.
Skips where PyTorch is not installed (it is the `bench` extra).
"""

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from benchmarks import step_timing, throughput_sizes, torch_reference  # noqa: E402


def _tiny(stem):
  c = throughput_sizes.config_for("tiny", batch_size=8)
  c.model.image = dict(c.model.image, width=32, mlp_dim=64, stem=stem)
  c.model.text = dict(c.model.text, width=32, mlp_dim=64)
  c.model.embed_dim = 16
  c.optim.warmup_steps = 2
  return c


@pytest.mark.parametrize("stem", ["patch", "conv"])
def test_same_loss_and_updates_for_same_weights(stem):
  config = _tiny(stem)
  batch = throughput_sizes.random_batch(config, seed=1)
  assert not batch["text_mask"].all()  # padding is exercised
  jax_step = step_timing.CompiledStep(config, batch, warm_up=False)
  params0 = jax.tree.map(np.asarray, jax_step.state.params)
  model = torch_reference.from_flax(torch_reference.build(config), params0)
  torch_batch = torch_reference.to_torch_batch(batch)

  with torch.no_grad():
    first = float(model(torch_batch))
  assert np.isfinite(first)

  steps = 4
  torch_step = torch_reference.TrainStep(
    model, config.optim, torch_reference.schedule_values(jax_step.schedule, steps).__getitem__
  )
  jax_losses, torch_losses = [], []
  for _ in range(steps):
    jax_step.run(1)
    jax_losses.append(float(jax_step.metrics["loss"]))
    torch_losses.append(float(torch_step(torch_batch)))
  np.testing.assert_allclose(torch_losses[0], first, rtol=1e-6)
  np.testing.assert_allclose(torch_losses, jax_losses, rtol=2e-5, atol=2e-5)
  assert abs(jax_losses[-1] - jax_losses[0]) > 1e-3  # the steps did update the weights

  # After the updates, the weights are the same too.
  params = jax.tree.map(np.asarray, jax_step.state.params)
  np.testing.assert_allclose(
    model.logit_scale.detach().numpy(), params["logit_scale"], rtol=1e-5, atol=1e-6
  )
  np.testing.assert_allclose(
    model.text_proj.weight.detach().numpy().T, params["text_proj"]["kernel"], rtol=1e-4, atol=1e-5
  )
  np.testing.assert_allclose(
    model.image_encoder.encoder.blocks[0].fc1.weight.detach().numpy().T,
    params["image_encoder"]["transformer"]["block0"]["mlp"]["fc1"]["kernel"],
    rtol=1e-4,
    atol=1e-5,
  )


def test_analytic_flops_match_xla_for_the_dense_part():
  """The analytic count is within 10% of XLA's count for the tiny model's step."""
  config = _tiny("patch")
  config.batch_size = 16
  batch = throughput_sizes.random_batch(config)
  compiled = step_timing.CompiledStep(config, batch, warm_up=False).compiled()
  from cmjax import perf  # pylint: disable=g-import-not-at-top

  xla = perf.compiled_flops(compiled)
  analytic = throughput_sizes.model_flops_per_step(config)
  assert xla is not None
  assert 0.9 < xla / analytic < 1.6, (xla, analytic)
