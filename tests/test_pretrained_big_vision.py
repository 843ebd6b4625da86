"""A big_vision SigLIP checkpoint (`.npz`) imported by cmjax computes what the
same weights compute in transformers' `SiglipModel`.

big_vision is not on PyPI, so the reference is transformers: a tiny random
`SiglipModel` made here is written to an `.npz` in big_vision's layout (the
parameter names and shapes of big_vision's two-towers model: `img/Transformer/
encoderblock_{i}/...`, `img/MAPHead_0`, `txt/Encoder_0`, `txt/head`, `t`, `b`),
imported, and compared in float32; also with the blocks saved stacked, as
big_vision's `scan=True` saves them.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from cmjax.models import registry  # noqa: E402
from cmjax.pretrained import big_vision_npz  # noqa: E402
from tests import helpers  # noqa: E402

HEADS = 4


def _dense(sd, name):
  return {"kernel": sd[f"{name}.weight"].T, "bias": sd[f"{name}.bias"]}


def _attention(q, k, v, o, heads):
  """torch (weight, bias) pairs -> flax MultiHeadDotProductAttention params."""
  width = q[0].shape[1]
  split = lambda w, b: {"kernel": w.T.reshape(width, heads, -1), "bias": b.reshape(heads, -1)}  # noqa: E731
  out = {"kernel": o[0].T.reshape(heads, -1, width), "bias": o[1]}
  return {"query": split(*q), "key": split(*k), "value": split(*v), "out": out}


def _block(sd, p):
  pair = lambda n: (sd[f"{p}self_attn.{n}_proj.weight"], sd[f"{p}self_attn.{n}_proj.bias"])  # noqa: E731
  ln = lambda n: {"scale": sd[f"{p}{n}.weight"], "bias": sd[f"{p}{n}.bias"]}  # noqa: E731
  return {
    "LayerNorm_0": ln("layer_norm1"),
    "MultiHeadDotProductAttention_0": _attention(
      pair("q"), pair("k"), pair("v"), pair("out"), HEADS
    ),
    "LayerNorm_1": ln("layer_norm2"),
    "MlpBlock_0": {"Dense_0": _dense(sd, f"{p}mlp.fc1"), "Dense_1": _dense(sd, f"{p}mlp.fc2")},
  }


def _flatten(tree, prefix="params"):
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f"{prefix}/{k}"))
    else:
      out[f"{prefix}/{k}"] = np.asarray(v, np.float32)
  return out


def big_vision_arrays(model, depth, stacked=False):
  sd = {k: v.numpy() for k, v in model.state_dict().items()}
  ln = lambda n: {"scale": sd[f"{n}.weight"], "bias": sd[f"{n}.bias"]}  # noqa: E731

  def encoder(prefix, final):
    blocks = [_block(sd, f"{prefix}encoder.layers.{i}.") for i in range(depth)]
    if stacked:
      import jax

      tree = {"encoderblock": jax.tree_util.tree_map(lambda *x: np.stack(x), *blocks)}
    else:
      tree = {f"encoderblock_{i}": b for i, b in enumerate(blocks)}
    return {**tree, "encoder_norm": ln(prefix + final)}

  v, h = "vision_model.", "vision_model.head."
  w = sd[f"{h}attention.in_proj_weight"]
  b = sd[f"{h}attention.in_proj_bias"]
  map_attn = _attention(
    *zip(np.split(w, 3), np.split(b, 3)),
    (sd[f"{h}attention.out_proj.weight"], sd[f"{h}attention.out_proj.bias"]),
    HEADS,
  )
  width = sd[f"{v}embeddings.position_embedding.weight"].shape[1]
  tree = {
    "img": {
      "embedding": {
        "kernel": sd[f"{v}embeddings.patch_embedding.weight"].transpose(2, 3, 1, 0),
        "bias": sd[f"{v}embeddings.patch_embedding.bias"],
      },
      "pos_embedding": sd[f"{v}embeddings.position_embedding.weight"][None],
      "Transformer": encoder(v, "post_layernorm"),
      "MAPHead_0": {
        "probe": sd[f"{h}probe"].reshape(1, 1, width),
        "MultiHeadDotProductAttention_0": map_attn,
        "LayerNorm_0": ln(f"{h}layernorm"),
        "MlpBlock_0": {"Dense_0": _dense(sd, f"{h}mlp.fc1"), "Dense_1": _dense(sd, f"{h}mlp.fc2")},
      },
    },
    "txt": {
      "Embed_0": {"embedding": sd["text_model.embeddings.token_embedding.weight"]},
      "pos_embedding": sd["text_model.embeddings.position_embedding.weight"][None],
      "Encoder_0": encoder("text_model.", "final_layer_norm"),
      "head": _dense(sd, "text_model.head"),
    },
    "t": sd["logit_scale"].reshape(1),
    "b": sd["logit_bias"].reshape(1),
  }
  return _flatten(tree)


@pytest.fixture(scope="module")
def tiny_siglip():
  torch.manual_seed(0)
  sizes = dict(hidden_size=24, intermediate_size=37, num_hidden_layers=2, num_attention_heads=HEADS)
  config = transformers.SiglipConfig(
    vision_config=dict(sizes, image_size=32, patch_size=8),
    text_config=dict(
      sizes,
      vocab_size=99,
      max_position_embeddings=16,
      pad_token_id=1,
      bos_token_id=2,
      eos_token_id=3,
    ),
  )
  return helpers.perturb_norms_and_biases(transformers.SiglipModel(config))


@pytest.mark.parametrize("stacked", [False, True], ids=["unrolled", "scanned"])
def test_big_vision_npz_equals_transformers(tiny_siglip, tmp_path, stacked):
  path = tmp_path / "siglip.npz"
  np.savez(path, **big_vision_arrays(tiny_siglip, depth=2, stacked=stacked))
  cfg, params = big_vision_npz.load(str(path))
  assert cfg["image"]["num_heads"] == HEADS and cfg["image"]["pool"] == "map"
  rng = np.random.default_rng(2)
  images = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
  ids = rng.integers(4, 99, (3, 16)).astype(np.int32)
  ids[1, 9:] = 1  # padded with the pad id, attended to as trained
  model = registry.get_model(**cfg)
  mask = np.ones_like(ids, bool)
  img = np.asarray(model.apply({"params": params}, images, method=model.encode_image))
  txt = np.asarray(model.apply({"params": params}, ids, mask, method=model.encode_text))
  pixels = torch.tensor((images / np.float32(127.5) - 1).transpose(0, 3, 1, 2))
  with torch.no_grad():
    ref = tiny_siglip(input_ids=torch.tensor(ids, dtype=torch.long), pixel_values=pixels)
  np.testing.assert_allclose(img, ref.image_embeds.numpy(), atol=2e-5, rtol=2e-5)
  np.testing.assert_allclose(txt, ref.text_embeds.numpy(), atol=2e-5, rtol=2e-5)
  logits = np.exp(params["logit_scale"]) * img @ txt.T + params["logit_bias"]
  np.testing.assert_allclose(logits, ref.logits_per_image.numpy(), atol=1e-4, rtol=1e-5)


def test_a_class_token_tower_is_refused_by_name(tiny_siglip, tmp_path):
  arrays = big_vision_arrays(tiny_siglip, depth=2)
  arrays["params/img/cls"] = np.zeros((1, 1, 24), np.float32)
  np.savez(tmp_path / "tok.npz", **arrays)
  with pytest.raises(ValueError, match="class token"):
    big_vision_npz.load(str(tmp_path / "tok.npz"))
