"""The benchmark sizes (benchmarks/throughput_sizes.py) are what they claim to be."""

import pytest

from benchmarks import throughput_sizes


def test_vit_b16_size_has_the_published_vit_b16_forward_cost():
  """ViT-B/16 at 224x224 is 17.6 G multiply-adds per image forward (197 tokens
  with the class token; ours mean-pools 196), so the analytic count, in FLOPs
  (2 per multiply-add), must come within 2% of 2 x 17.56e9."""
  config = throughput_sizes.config_for("vit_b16")
  assert config.data.image_size == 224 and config.model.embed_dim == 512
  flops = throughput_sizes._vit_flops(224, config.model.image)  # pylint: disable=protected-access
  assert flops / (2 * 17.56e9) == pytest.approx(1.0, abs=0.02)


def test_random_batch_follows_the_size():
  batch = throughput_sizes.random_batch(throughput_sizes.config_for("vit_b16", batch_size=2))
  assert batch["image"].shape == (2, 224, 224, 3)
  assert batch["text"].shape == batch["text_mask"].shape == (2, 20)


def test_unknown_size_names_the_known_ones():
  with pytest.raises(ValueError, match="vit_b16"):
    throughput_sizes.config_for("huge")
