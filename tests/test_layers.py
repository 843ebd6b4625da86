"""cmjax.models.layers: the partitioned layer helpers and the one `Dtype`."""

import pathlib
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cmjax
from cmjax.models import layers


def _axes(variables) -> dict[str, tuple]:
  """{'/'-joined param path: its logical axis names}."""
  spec = nn.get_partition_spec(variables)["params"]
  flat = jax.tree_util.tree_flatten_with_path(
    spec, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec)
  )[0]
  return {"/".join(k.key for k in path): tuple(s) for path, s in flat}


def test_dense_is_the_partitioned_flat_dense():
  x = jax.random.normal(jax.random.key(0), (2, 3, 5))
  module = layers.dense(4, "proj", in_axis="conv_in", out_axis="embed")
  variables = module.init(jax.random.key(1), x)
  assert isinstance(module, layers.Dense)
  assert _axes(variables) == {"kernel": ("conv_in", "embed"), "bias": ("embed",)}
  ref = nn.Dense(4, name="proj")
  params = nn.unbox(variables)
  np.testing.assert_array_equal(
    params["params"]["kernel"], ref.init(jax.random.key(1), x)["params"]["kernel"]
  )
  np.testing.assert_allclose(module.apply(params, x), ref.apply(params, x), rtol=1e-6, atol=1e-6)


def test_conv_bias_takes_the_output_axis_and_axes_must_match_the_kernel():
  x = jnp.ones((2, 8, 3))
  module = layers.conv(6, (3,), (2,), ((1, 1),), "conv0", jnp.float32, (None, "mels", "mlp"))
  variables = module.init(jax.random.key(0), x)
  assert _axes(variables) == {"kernel": (None, "mels", "mlp"), "bias": ("mlp",)}
  assert module.apply(nn.unbox(variables), x).shape == (2, 4, 6)
  no_bias = layers.conv(
    6, (3,), (1,), "SAME", "c", jnp.float32, (None, "conv_in", "conv_out"), use_bias=False
  )
  assert set(_axes(no_bias.init(jax.random.key(0), x))) == {"kernel"}
  with pytest.raises(ValueError, match="kernel_axes"):
    layers.conv(6, (3, 3), (1, 1), "SAME", "c", jnp.float32, (None, "conv_in", "conv_out"))


@pytest.mark.parametrize(
  "shape,patch",
  [
    ((2, 8, 12, 3), (4, 4)),  # image
    ((2, 16, 8, 1), (4, 8)),  # spectrogram
    ((2, 4, 8, 8, 3), (2, 4, 4)),
  ],
)  # video tubelets
def test_patch_embed_maps_each_patch_to_one_token(shape, patch):
  x = jax.random.normal(jax.random.key(0), shape)
  module = layers.patch_embed(5, patch, "patch_embed", jnp.float32)
  variables = module.init(jax.random.key(1), x)
  window = (None,) * len(patch)
  assert _axes(variables) == {"kernel": window + ("conv_in", "embed"), "bias": ("embed",)}
  y = module.apply(nn.unbox(variables), x)
  grid = tuple(s // p for s, p in zip(shape[1:-1], patch))
  assert y.shape == (shape[0], *grid, 5)
  # The first patch's token is that patch flattened times the flattened kernel.
  params = nn.unbox(variables)["params"]
  first = x[(0, *(slice(0, p) for p in patch))].reshape(-1)
  want = first @ params["kernel"].reshape(first.size, 5) + params["bias"]
  np.testing.assert_allclose(y[(0,) + (0,) * len(patch)], want, rtol=1e-5, atol=1e-5)


def test_layer_norm_and_token_embed_axes():
  x = jnp.ones((2, 3, 4))
  norm = layers.layer_norm("ln", axis="mlp").init(jax.random.key(0), x)
  assert _axes(norm) == {"scale": ("mlp",), "bias": ("mlp",)}
  embed = layers.token_embed(10, 4).init(jax.random.key(0), jnp.zeros((2, 3), jnp.int32))
  assert _axes(embed) == {"embedding": ("vocab", "embed")}


def test_dtype_is_defined_once_in_cmjax():
  root = pathlib.Path(cmjax.__file__).parent
  defining = sorted(
    str(p.relative_to(root))
    for p in root.rglob("*.py")
    if re.search(r"^Dtype\s*=", p.read_text(), re.MULTILINE)
  )
  assert defining == ["models/layers.py"], defining
