"""cmjax's `contrastive` model with weights converted from Hugging Face `CLIPModel`
and `SiglipModel` folders computes what transformers computes: tiny randomly
initialised models made here (no download), saved as safetensors, converted,
compared in float32 (image and text embeddings, logits, resized positions)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors")

import jax  # noqa: E402

from cmjax import init_from, sharding  # noqa: E402
from cmjax.models import registry  # noqa: E402
from cmjax.pretrained import hf_clip, hf_siglip, positions  # noqa: E402
from tests import helpers  # noqa: E402

TOL = dict(atol=2e-5, rtol=2e-5)
EOS = 5
VISION = dict(
  hidden_size=32,
  intermediate_size=37,
  num_hidden_layers=2,
  num_attention_heads=4,
  image_size=32,
  patch_size=8,
)
TEXT = dict(
  vocab_size=99,
  hidden_size=24,
  intermediate_size=41,
  num_hidden_layers=2,
  num_attention_heads=4,
  max_position_embeddings=16,
)


def _perturbed(model):
  return helpers.perturb_norms_and_biases(model)


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
  torch.manual_seed(0)
  config = transformers.CLIPConfig(
    vision_config=dict(VISION, hidden_act="quick_gelu", layer_norm_eps=1e-5),
    text_config=dict(
      TEXT, hidden_act="quick_gelu", layer_norm_eps=1e-5, eos_token_id=EOS, bos_token_id=4
    ),
    projection_dim=20,
  )
  model = _perturbed(transformers.CLIPModel(config))
  folder = str(tmp_path_factory.mktemp("clip"))
  model.save_pretrained(folder, safe_serialization=True)
  return model, folder


@pytest.fixture(scope="module")
def tiny_siglip(tmp_path_factory):
  torch.manual_seed(0)
  config = transformers.SiglipConfig(
    vision_config=dict(VISION, hidden_size=24),
    text_config=dict(TEXT, pad_token_id=1, bos_token_id=2, eos_token_id=EOS),
  )
  model = _perturbed(transformers.SiglipModel(config))
  folder = str(tmp_path_factory.mktemp("siglip"))
  model.save_pretrained(folder, safe_serialization=True)
  return model, folder


def _images(size=32, batch=3, seed=2):
  return np.random.default_rng(seed).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)


def _pixel_values(images, mean, std):
  x = (images.astype(np.float32) / 255.0 - np.float32(mean)) / np.float32(std)
  return torch.tensor(x.transpose(0, 3, 1, 2))


def _texts(length=10, seed=3):
  """Ids ending in EOS at each row's last real position (as CLIP's tokenizer
  makes them), then padding; no other EOS."""
  rng = np.random.default_rng(seed)
  ids = rng.integers(6, TEXT["vocab_size"], (3, length))
  lengths = np.array([length, 6, 2])
  ids[np.arange(3), lengths - 1] = EOS
  mask = np.arange(length)[None] < lengths[:, None]
  return np.where(mask, ids, 0).astype(np.int32), mask


def _model(cfg):
  return registry.get_model(**{k: v for k, v in cfg.items()})


def _embed(cfg, params, images, ids, mask):
  model = _model(cfg)
  variables = {"params": params}
  img = model.apply(variables, images, method=model.encode_image)
  txt = model.apply(variables, ids, mask, method=model.encode_text)
  return np.asarray(img), np.asarray(txt)


def test_clip_embeddings_and_logits_equal_transformers(tiny_clip):
  model, folder = tiny_clip
  cfg, params = hf_clip.load(folder)
  images, (ids, mask) = _images(), _texts()
  img, txt = _embed(cfg, params, images, ids, mask)
  mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
  with torch.no_grad():
    ref = model(
      input_ids=torch.tensor(ids, dtype=torch.long),
      attention_mask=torch.tensor(mask, dtype=torch.long),
      pixel_values=_pixel_values(images, mean, std),
    )
  np.testing.assert_allclose(img, ref.image_embeds.numpy(), **TOL)
  np.testing.assert_allclose(txt, ref.text_embeds.numpy(), **TOL)
  logits = np.exp(params["logit_scale"]) * img @ txt.T
  np.testing.assert_allclose(logits, ref.logits_per_image.numpy(), atol=1e-4, rtol=1e-5)


def test_siglip_embeddings_and_logits_equal_transformers(tiny_siglip):
  model, folder = tiny_siglip
  cfg, params = hf_siglip.load(folder)
  images, (ids, _) = _images(), _texts()
  ids[ids == 0] = 1  # padded with SigLIP's pad id, attended to as trained
  mask = np.ones_like(ids, bool)
  img, txt = _embed(cfg, params, images, ids, mask)
  with torch.no_grad():
    ref = model(
      input_ids=torch.tensor(ids, dtype=torch.long), pixel_values=_pixel_values(images, 0.5, 0.5)
    )
  np.testing.assert_allclose(img, ref.image_embeds.numpy(), **TOL)
  np.testing.assert_allclose(txt, ref.text_embeds.numpy(), **TOL)
  logits = np.exp(params["logit_scale"]) * img @ txt.T + params["logit_bias"]
  np.testing.assert_allclose(logits, ref.logits_per_image.numpy(), atol=1e-4, rtol=1e-5)
  # The text mask does not change SigLIP's embeddings (it attends to padding).
  _, masked = _embed(cfg, params, images, ids, ids != 1)
  np.testing.assert_allclose(masked, txt, **TOL)


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_converted_trees_are_the_models_own(kind, tiny_clip, tiny_siglip):
  folder = (tiny_clip if kind == "clip" else tiny_siglip)[1]
  cfg, params = (hf_clip if kind == "clip" else hf_siglip).load(folder)
  ids, mask = _texts()
  fresh = _model(cfg).init(jax.random.key(0), {"image": _images(), "text": ids, "text_mask": mask})
  shapes = lambda t: jax.tree_util.tree_map(np.shape, t)  # noqa: E731
  assert shapes(sharding.unbox(fresh["params"])) == shapes(params)


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_positions_resized_for_another_image_size_equal_transformers(kind, tiny_clip, tiny_siglip):
  """48-pixel images on a checkpoint of 32: init_from resizes the 4x4 grid to
  6x6 as transformers' `interpolate_pos_encoding=True` does."""
  model, folder = tiny_clip if kind == "clip" else tiny_siglip
  cfg, params = (hf_clip if kind == "clip" else hf_siglip).load(folder)
  images = _images(size=48)
  saved = params["image_encoder"]["pos_embedding"]
  rows = 36 + (kind == "clip")
  targets = {
    "image_encoder/pos_embedding": jax.ShapeDtypeStruct((rows, saved.shape[1]), np.float32)
  }
  mapping, _ = init_from.match(
    {"image_encoder/pos_embedding": saved}, targets, None, init_from.RESIZE_POSITIONS
  )
  assert mapping == {"image_encoder/pos_embedding": "image_encoder/pos_embedding"}
  resized = positions.resize(saved, rows)
  assert resized.shape == (rows, saved.shape[1])
  params = dict(params, image_encoder=dict(params["image_encoder"], pos_embedding=resized))
  m = _model(cfg)
  img = np.asarray(m.apply({"params": params}, images, method=m.encode_image))
  stats = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))
  with torch.no_grad():
    ref = model.get_image_features(
      pixel_values=_pixel_values(images, *(stats if kind == "clip" else (0.5, 0.5))),
      interpolate_pos_encoding=True,
    )
  ref = getattr(ref, "pooler_output", ref).numpy()
  ref = ref / np.linalg.norm(ref, axis=-1, keepdims=True)
  np.testing.assert_allclose(img, ref, **TOL)


def test_resize_matrix_equals_torch_bicubic():
  rng = np.random.default_rng(0)
  grid = rng.normal(size=(5, 5, 3)).astype(np.float32)
  for out in (3, 5, 8, 13):
    ref = torch.nn.functional.interpolate(
      torch.tensor(grid.transpose(2, 0, 1))[None], size=(out, out), mode="bicubic"
    )[0].numpy()
    got = positions.resize(grid.reshape(25, 3), out * out).reshape(out, out, 3)
    np.testing.assert_allclose(got, ref.transpose(1, 2, 0), atol=1e-5)
  with pytest.raises(ValueError, match="square grid"):
    positions.resize(grid.reshape(25, 3), 30)


SENTENCES = ["A red circle, left of a Blue square!", "a red circle " * 8, "two  stars"]


def test_clip_tokenizer_ids_equal_transformers(tmp_path):
  """A CLIP tokenizer folder (byte-level BPE with `</w>` word ends) through
  `data.tokenizer='hf:.../tokenizer.json'` gives transformers' ids and mask."""
  import tokenizers

  from cmjax.data import tokenizers as tok_lib

  chars = sorted(tokenizers.pre_tokenizers.ByteLevel.alphabet())
  merges = [("r", "e"), ("re", "d</w>"), ("c", "i"), ("ci", "r"), ("l", "e</w>")]
  vocab = ["<|startoftext|>", "<|endoftext|>", *chars, *(c + "</w>" for c in chars)]
  vocab += ["".join(m) for m in merges]
  ref = transformers.CLIPTokenizer(vocab={t: i for i, t in enumerate(vocab)}, merges=merges)
  ref.save_pretrained(str(tmp_path))
  ours = tok_lib.get_tokenizer(f"hf:{tmp_path}/tokenizer.json", pad_id=ref.pad_token_id)
  for text in SENTENCES:
    want = ref(text, padding="max_length", max_length=12, truncation=True)
    ids, mask = ours.pad(text, 12)
    assert ids.tolist() == want["input_ids"], text
    assert mask.astype(int).tolist() == want["attention_mask"], text
    assert ids[mask.sum() - 1] == ref.eos_token_id  # where the 'last' pooling reads


def test_siglip_tokenizer_ids_equal_transformers(tmp_path):
  """A SigLIP SentencePiece model with `lowercase`, `strip_punctuation` and the
  pad id 1 gives transformers' `padding='max_length'` ids."""
  spm = pytest.importorskip("sentencepiece")
  from cmjax.data import tokenizers as tok_lib

  spm.SentencePieceTrainer.train(
    sentence_iterator=iter([s.lower() for s in SENTENCES] * 5),
    model_prefix=str(tmp_path / "sp"),
    vocab_size=24,
    model_type="unigram",
    pad_id=0,
    eos_id=1,
    unk_id=2,
    bos_id=-1,
    minloglevel=2,
  )
  ref = transformers.SiglipTokenizer(vocab_file=str(tmp_path / "sp.model"))
  options = dict(lowercase=True, strip_punctuation=True, pad_id=ref.pad_token_id)
  ours = tok_lib.get_tokenizer(f"sentencepiece:{tmp_path}/sp.model", **options)
  for text in SENTENCES:
    want = ref(text, padding="max_length", max_length=16, truncation=True)["input_ids"]
    assert ours.pad(text, 16)[0].tolist() == want, text


def test_a_converted_clip_image_tower_locked_in_a_run_computes_transformers_embeddings(
  tiny_clip, tmp_path
):
  """The whole route: convert -> `convert.apply` -> a run on shapes (64-pixel
  images: the 4x4 position grid resized to 8x8) with the image tower and its
  projection locked (LiT) and a fresh text tower -> after training, the run's
  image embeddings are transformers' (`interpolate_pos_encoding=True`)."""
  from cmjax import trainer
  from cmjax.pretrained import convert

  model, folder = tiny_clip
  dst = str(tmp_path / "converted")
  assert convert.main([folder, dst]) == 0
  config = helpers.load_config("shapes_contrastive.py", "tiny")
  info = convert.apply(
    config, dst, rules=[(r"(image_encoder/.*|image_proj/.*|logit_scale)", r"\1")]
  )
  assert info["format"] == "hf_clip" and config.model.image.ln_pre
  assert config.init_from.path == dst and config.model.modalities == ("image", "text")
  config.total_steps = 2
  config.evals = {}
  config.optim.groups = [("image_(encoder|proj)/.*", dict(frozen=True))]
  workdir = str(tmp_path / "lit")
  trainer.train_and_evaluate(config, workdir)

  from cmjax import init_from

  trained = init_from.saved_params(f"{workdir}/checkpoints/2")
  params = init_from.nested(trained)
  assert trained["image_encoder/pos_embedding"].shape == (65, 32)
  images = _images(size=64)
  ours = registry.get_model(**{k: v for k, v in config.model.items()}, data=None)
  cfg_image = dict(config.model.image)
  assert cfg_image["pixel_norm"] == "clip"
  img = np.asarray(
    ours.apply(
      {
        "params": {
          k: params[k] for k in ("image_encoder", "image_proj", "logit_scale", "logit_bias")
        }
      },
      images,
      method=ours.encode_image,
    )
  )
  stats = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))
  with torch.no_grad():
    ref = model.get_image_features(
      pixel_values=_pixel_values(images, *stats), interpolate_pos_encoding=True
    )
  ref = getattr(ref, "pooler_output", ref).numpy()
  np.testing.assert_allclose(img, ref / np.linalg.norm(ref, axis=-1, keepdims=True), **TOL)
