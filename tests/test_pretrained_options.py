"""The options imported weights need, without torch: projection kinds, pad ids,
position tables resized by init_from (their parity with transformers is in
tests/test_pretrained_clip_siglip.py, which needs torch)."""

import jax
import numpy as np
import pytest

from cmjax import init_from
from cmjax.data import tokenizers as tok_lib
from cmjax.models import registry
from cmjax.pretrained import positions

TOWERS = dict(
  image=dict(name="vit", patch_size=8, width=16, depth=1, num_heads=2, mlp_dim=32, pool="map"),
  text=dict(
    name="transformer", vocab_size=30, max_len=8, width=16, depth=1, num_heads=2, mlp_dim=32
  ),
)


def _batch():
  rng = np.random.default_rng(0)
  return {
    "image": rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8),
    "text": rng.integers(1, 30, (2, 8)).astype(np.int32),
    "text_mask": np.ones((2, 8), bool),
  }


def test_projection_kinds_make_the_parameters_they_say():
  model = registry.get_model(
    "contrastive", embed_dim=16, projection=dict(image="none", text="linear_bias"), **TOWERS
  )
  params = model.init(jax.random.key(0), _batch())["params"]
  assert "image_proj" not in params and set(params["text_proj"]) == {"kernel", "bias"}
  out = model.apply({"params": params}, _batch())
  np.testing.assert_allclose(np.linalg.norm(out["image"], axis=-1), 1.0, rtol=1e-5)
  plain = registry.get_model("contrastive", embed_dim=16, **TOWERS)
  assert set(plain.init(jax.random.key(0), _batch())["params"]["text_proj"]) == {"kernel"}


def test_bad_projections_are_named():
  bad = registry.get_model("contrastive", embed_dim=16, projection=dict(text="mlp"), **TOWERS)
  with pytest.raises(ValueError, match="projection.*'text': 'mlp'"):
    bad.init(jax.random.key(0), _batch())
  narrow = registry.get_model("contrastive", embed_dim=8, projection=dict(image="none"), **TOWERS)
  with pytest.raises(ValueError, match=r"projection\['image'\]='none'.*\(16\).*embed_dim \(8\)"):
    narrow.init(jax.random.key(0), _batch())


def test_bad_pad_ids_are_named(tmp_path):
  with pytest.raises(ValueError, match="tokenizer_options.pad_id=-1"):
    tok_lib._check_pad_id(-1)  # pylint: disable=protected-access


def test_init_from_resizes_only_image_position_grids():
  rows = lambda n: jax.ShapeDtypeStruct((n, 4), np.float32)  # noqa: E731
  saved = {
    "image_encoder/pos_embedding": np.zeros((17, 4)),
    "text_encoder/pos_embedding": np.zeros((16, 4)),
  }
  default = init_from.RESIZE_POSITIONS
  mapping, _ = init_from.match(
    saved,
    {"image_encoder/pos_embedding": rows(37), "text_encoder/pos_embedding": rows(16)},
    None,
    default,
  )
  assert set(mapping) == set(saved)
  with pytest.raises(
    ValueError, match=r"'text_encoder/pos_embedding' has shape \(64, 4\).*\(16, 4\)"
  ):
    init_from.match(
      saved,
      {"image_encoder/pos_embedding": rows(37), "text_encoder/pos_embedding": rows(64)},
      None,
      default,
    )
  with pytest.raises(ValueError, match=r"'image_encoder/pos_embedding' has shape \(30, 4\)"):
    init_from.match(
      saved,
      {"image_encoder/pos_embedding": rows(30), "text_encoder/pos_embedding": rows(16)},
      None,
      default,
    )
  with pytest.raises(ValueError, match=r"'image_encoder/pos_embedding' has shape \(37, 4\)"):
    init_from.match(
      saved,
      {"image_encoder/pos_embedding": rows(37), "text_encoder/pos_embedding": rows(16)},
      None,
      "",
    )


def test_resizing_to_the_same_grid_changes_nothing_and_keeps_the_class_row():
  table = np.random.default_rng(0).normal(size=(17, 3)).astype(np.float32)
  np.testing.assert_allclose(positions.resize(table, 17), table, atol=1e-6)
  bigger = positions.resize(table, 37)
  np.testing.assert_array_equal(bigger[0], table[0])
  # A constant grid stays constant (the weights of each output sum to one).
  flat = np.concatenate([table[:1], np.ones((16, 3), np.float32)])
  np.testing.assert_allclose(positions.resize(flat, 50)[1:], 1.0, atol=1e-6)


def test_convert_apply_and_init_from_load_an_open_clip_layout_without_torch(tmp_path):
  """A random state dict in open_clip's layout (numpy + safetensors) ->
  `python -m cmjax.pretrained.convert` -> `convert.apply` on a config ->
  `init_from.load`: the packed attention is split and the projections kept as
  `x @ P`, as the parity test against open_clip checks numerically."""
  safetensors_numpy = pytest.importorskip("safetensors.numpy")
  from cmjax import experiment
  from cmjax.pretrained import convert, open_clip_weights
  from tests import helpers

  tensors = open_clip_weights.example_state_dict(image_size=64, patch_size=16, width=32)
  src = str(tmp_path / "open_clip_model.safetensors")
  safetensors_numpy.save_file(tensors, src)
  dst = str(tmp_path / "converted")
  assert convert.main([src, dst, "--head_width=16"]) == 0
  config = helpers.load_config("shapes_contrastive.py", "tiny")
  info = convert.apply(config, dst, strict=False)
  assert info["format"] == "open_clip" and config.model.image.num_heads == 2
  # The checkpoint's text tower has a byte vocabulary; the run's own from the data.
  config.model.text = dict(name="transformer", width=16, depth=1, num_heads=2, mlp_dim=32)
  config.init_from.rules = [(r"(image_encoder/.*|image_proj/.*)", r"\1")]
  exp = experiment.build(config)
  abstract, _, _ = exp.init_state()
  loaded = init_from.load(dict(config.init_from), abstract.params)
  np.testing.assert_array_equal(np.asarray(loaded["image_proj/kernel"]), tensors["visual.proj"])
  q = tensors["visual.transformer.resblocks.1.attn.in_proj_weight"][:32]  # [out, in]
  np.testing.assert_array_equal(
    np.asarray(loaded["image_encoder/transformer/block1/attn/query/kernel"]),
    q.T.reshape(32, 2, 16),
  )
  with pytest.raises(ValueError, match="not found: convert the weights first"):
    convert.apply(config, str(tmp_path / "elsewhere"))
  with pytest.raises(ValueError, match="expected a Hugging Face model folder"):
    convert.detect(str(tmp_path / "weights.pt"))


def test_lit_from_a_whole_clip_conversion_takes_and_locks_its_text_side(tmp_path):
  safetensors_numpy = pytest.importorskip("safetensors.numpy")
  from cmjax.pretrained import convert, open_clip_weights, recipes
  from tests import helpers

  src = str(tmp_path / "open_clip_model.safetensors")
  safetensors_numpy.save_file(open_clip_weights.example_state_dict(context_length=32), src)
  dst = str(tmp_path / "converted")
  convert.convert(src, dst, head_width=16)
  config = helpers.load_config("shapes_contrastive.py", "tiny")
  image = dict(config.model.image)
  recipes.locked_text_tower(config, dst)
  assert dict(config.model.image) == image  # the run's own image tower, fresh
  assert config.model.text.causal and dict(config.model.projection) == {"text": "linear"}
  assert config.init_from.rules == [(r"(text_encoder/.*|text_proj/.*)", r"\1")]
  assert config.optim.groups == [("text_(encoder|proj)/.*", {"frozen": True})]
  scratch = helpers.load_config("shapes_contrastive.py", "tiny")
  recipes.locked_text_tower(scratch, dst, scratch=True)
  assert not scratch.init_from.path and not scratch.optim.get("groups")
