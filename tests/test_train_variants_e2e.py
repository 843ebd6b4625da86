"""train.py end to end with other encoders and objectives: BatchNorm state,
RNN text, the VICReg alignment objective, video."""

import json
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tests import helpers


def _metrics(workdir):
  with open(os.path.join(workdir, "metrics.json")) as f:
    return json.load(f)


def test_batchnorm_state_is_trained_checkpointed_and_used_in_eval(tmp_path):
  workdir = str(tmp_path)
  # The same run checks the alignment objective on unnormalised embeddings.
  arg = "shapes_contrastive.py:tiny,image=resnet_bn,text=gru,audio=cnn,loss=vicreg"
  helpers.run_train(workdir, arg)
  m = _metrics(workdir)
  assert np.isfinite(m["train/loss"]) and np.isfinite(m["retrieval/image_to_text/R@5"])
  assert m["train/align/std/image"] > 0 and "train/align/variance/image_text" in m
  steps = helpers.load_config("shapes_contrastive.py", "tiny").total_steps
  state = ocp.StandardCheckpointer().restore(
    os.path.join(workdir, "checkpoints", str(steps), "state")
  )
  stats = state["model_state"]["batch_stats"]["image_encoder"]
  # Running means start at 0 and variances at 1; training moved them.
  assert float(np.max(np.abs(stats["stem_norm"]["mean"]))) > 1e-3
  assert float(np.max(np.abs(stats["stem_norm"]["var"] - 1))) > 1e-3
  # load_trained hands back params and batch_stats together.
  from cmjax import trainer

  config = helpers.load_config("shapes_contrastive.py", arg.split(":")[1])
  _, variables, step = trainer.load_trained(config, workdir)
  assert step == steps and set(variables) == {"params", "batch_stats"}
  np.testing.assert_array_equal(
    jax.device_get(variables["batch_stats"]["image_encoder"]["stem_norm"]["mean"]),
    stats["stem_norm"]["mean"],
  )


def test_video_text_run_reports_video_retrieval(tmp_path):
  workdir = str(tmp_path)
  proc = helpers.run_train(workdir, "shapes_video.py:tiny,video=tubelet_vit")
  m = _metrics(workdir)
  for key in (
    "retrieval/video_to_text/R@5",
    "retrieval/text_to_video/R@5",
    "retrieval/video_text/rsum",
  ):
    assert np.isfinite(m[key]), key
  assert not any(k.startswith("retrieval/image") for k in m)
  assert "Model contrastive" in proc.stdout


def test_unknown_encoder_variant_is_refused_with_the_choices(tmp_path):
  proc = helpers.run_train(str(tmp_path), "shapes_contrastive.py:tiny,image=vgg", check=False)
  assert proc.returncode != 0 and "image='vgg'" in proc.stderr and "resnet_bn" in proc.stderr
  with pytest.raises(ValueError, match=r"loss='mse'.*'vicreg'"):
    helpers.load_config("shapes_contrastive.py", "tiny,loss=mse")
  proc = helpers.run_train(
    str(tmp_path), "shapes_contrastive.py:tiny", "--config.model.image.name=resnet", check=False
  )
  assert proc.returncode != 0 and "patch_size" in proc.stderr
