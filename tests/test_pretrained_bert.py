"""The `bert` text encoder with weights converted from a Hugging Face `BertModel`
folder computes what `BertModel` computes: a tiny randomly initialised model made
here (no download), saved as safetensors, converted, compared in float32."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from cmjax.models import encoders  # noqa: E402
from cmjax.pretrained import hf_bert  # noqa: E402
from tests import helpers  # noqa: E402


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
  torch.manual_seed(0)
  config = transformers.BertConfig(
    vocab_size=101,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=40,
    type_vocab_size=2,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
  )
  model = transformers.BertModel(config, add_pooling_layer=True).eval()
  with torch.no_grad():  # non-trivial LayerNorm and bias values
    for name, p in model.named_parameters():
      if "LayerNorm" in name or name.endswith("bias"):
        p.add_(0.1 * torch.randn_like(p))
  folder = str(tmp_path_factory.mktemp("bert"))
  model.save_pretrained(folder, safe_serialization=True)
  return model, folder


def _inputs(seed=1, batch=3, length=12, vocab=101):
  rng = np.random.default_rng(seed)
  ids = rng.integers(1, vocab, (batch, length))
  lengths = np.array([length, 7, 3])
  mask = np.arange(length)[None] < lengths[:, None]
  return np.where(mask, ids, 0).astype(np.int32), mask


def test_converted_bert_equals_transformers_tokens_and_mean_embeddings(tiny_bert):
  model, folder = tiny_bert
  cfg, params = hf_bert.load(folder)
  ids, mask = _inputs()
  ref, ref_mean = helpers.torch_bert_states(model, ids, mask)

  cls = encoders.get_encoder_cls("text", "bert")
  kwargs = {k: v for k, v in cfg.items() if k != "name"}
  out = cls(**kwargs).apply({"params": params}, ids, mask)
  tokens = np.asarray(out.tokens)
  np.testing.assert_allclose(tokens[mask], ref[mask], atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(out.pooled), ref_mean, atol=1e-5, rtol=1e-5)
  first = cls(**dict(kwargs, pool="first")).apply({"params": params}, ids, mask)
  np.testing.assert_allclose(np.asarray(first.pooled), ref[:, 0], atol=1e-5, rtol=1e-5)


def test_the_converted_tree_is_the_encoders_own(tiny_bert):
  import jax

  _, folder = tiny_bert
  cfg, params = hf_bert.load(folder)
  ids, mask = _inputs()
  cls = encoders.get_encoder_cls("text", "bert")
  fresh = cls(**{k: v for k, v in cfg.items() if k != "name"}).init(jax.random.key(0), ids, mask)
  from cmjax import sharding

  want = jax.tree_util.tree_map(lambda x: x.shape, sharding.unbox(fresh["params"]))
  got = jax.tree_util.tree_map(lambda x: x.shape, params)
  assert want == got


def test_convert_writes_a_folder_init_from_loads_into_the_encoder(tiny_bert, tmp_path):
  """SRC -> `python -m cmjax.pretrained.convert` -> `config.init_from` rules -> the
  same outputs as transformers (the whole route a run takes)."""
  import json

  import jax

  from cmjax import init_from, sharding, train_state
  from cmjax.pretrained import convert

  model, folder = tiny_bert
  dst = str(tmp_path / "converted")
  assert convert.main([folder, dst]) == 0
  with open(f"{dst}/{convert.MODEL_FILE}") as f:
    info = json.load(f)
  assert info["format"] == "hf_bert" and info["init_from_rules"] == [["(.*)", r"text_encoder/\1"]]
  cfg = info["settings"]["model.text"]
  ids, mask = _inputs()
  enc = encoders.get_encoder_cls("text", "bert")(**{k: v for k, v in cfg.items() if k != "name"})
  fresh = sharding.unbox(enc.init(jax.random.key(1), ids, mask)["params"])
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = {
    "text_encoder": jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), fresh
    )
  }
  spec = dict(path=dst, rules=[(r"(.*)", r"text_encoder/\1")], strict=True)
  loaded = init_from.load(spec, abstract)
  params = train_state.replace_params({"text_encoder": fresh}, loaded)["text_encoder"]
  ref, _ = helpers.torch_bert_states(model, ids, mask)
  out = np.asarray(enc.apply({"params": params}, ids, mask).tokens)
  np.testing.assert_allclose(out[mask], ref[mask], atol=1e-5, rtol=1e-5)
  with pytest.raises(FileExistsError):
    convert.convert(folder, dst)
