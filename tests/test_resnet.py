"""ResNet image encoder: token grid, GroupNorm vs BatchNorm behaviour and state."""

import flax.linen as nn
import jax
import numpy as np
import pytest

from cmjax.models.resnet import ResNet

B = 4
SMALL = dict(features=(8, 16), blocks=(1, 1), num_groups=4)


def _images(seed=0, n=B):
  return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


@pytest.mark.parametrize(
  "stem_stride, features, grid", [(2, (8, 16), 8), (1, (8,), 32), (2, (8, 8, 16), 4)]
)
def test_token_grid(stem_stride, features, grid):
  enc = ResNet(
    features=features, blocks=(1,) * len(features), stem_stride=stem_stride, num_groups=4
  )
  out, _ = enc.init_with_output(jax.random.key(0), _images())
  assert out.tokens.shape == (B, grid * grid, features[-1])
  np.testing.assert_allclose(out.pooled, out.tokens.mean(axis=1), atol=1e-6)


def test_group_norm_has_no_state_and_rows_are_independent():
  enc = ResNet(**SMALL, norm="group")
  v = nn.meta.unbox(enc.init(jax.random.key(0), _images()))
  assert set(v) == {"params"}
  x = _images()
  both = enc.apply(v, x, train=True).pooled
  alone = enc.apply(v, x[:1], train=True).pooled
  np.testing.assert_allclose(alone[0], both[0], atol=1e-5)


def test_batch_norm_uses_batch_statistics_in_training_and_running_ones_in_eval():
  enc = ResNet(**SMALL, norm="batch", bn_momentum=0.5)
  v = nn.meta.unbox(enc.init(jax.random.key(0), _images()))
  assert set(v) == {"params", "batch_stats"}
  x = _images()
  # Training: statistics of the batch, so a row's output depends on the others,
  # and the running averages move.
  out, updates = enc.apply(v, x, train=True, mutable=["batch_stats"])
  alone, _ = enc.apply(v, x[:1], train=True, mutable=["batch_stats"])
  assert np.max(np.abs(alone.pooled[0] - out.pooled[0])) > 1e-3
  before = jax.tree_util.tree_leaves(v["batch_stats"])
  after = jax.tree_util.tree_leaves(updates["batch_stats"])
  assert any(np.max(np.abs(a - b)) > 1e-3 for a, b in zip(after, before))
  # Running mean = momentum * old + (1 - momentum) * batch mean, checked on
  # the stem norm, whose input is the stem conv of the images.
  old = v["batch_stats"]["stem_norm"]["mean"]
  new = updates["batch_stats"]["stem_norm"]["mean"]
  feats = nn.Conv(8, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)), use_bias=False).apply(
    {"params": {"kernel": v["params"]["stem_conv"]["kernel"]}},
    np.asarray(x, np.float32) / 127.5 - 1.0,
  )
  np.testing.assert_allclose(new, 0.5 * old + 0.5 * feats.mean(axis=(0, 1, 2)), atol=1e-4)
  # Evaluation: running statistics, rows independent, deterministic.
  v2 = {"params": v["params"], **updates}
  ev = enc.apply(v2, x).pooled
  ev_alone = enc.apply(v2, x[:1]).pooled
  np.testing.assert_allclose(ev_alone[0], ev[0], atol=1e-5)


def test_bad_options_name_the_attribute():
  with pytest.raises(ValueError, match="norm"):
    ResNet(**dict(SMALL, norm="layer")).init(jax.random.key(0), _images())
  with pytest.raises(ValueError, match="blocks"):
    ResNet(features=(8, 16), blocks=(1,)).init(jax.random.key(0), _images())
  with pytest.raises(ValueError, match="num_groups"):
    ResNet(features=(12,), blocks=(1,), num_groups=8).init(jax.random.key(0), _images())
