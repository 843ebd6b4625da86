"""train.py end to end for generation: a tiny CoCa-style run on speech (contrastive
+ captioning, beam-search captions scored), then a CTC recognizer whose audio
tower starts from it, on half of the transcripts."""

import json
import os
import re

import numpy as np
import pytest

from tests import helpers


def _read(workdir, name):
  with open(os.path.join(workdir, name)) as f:
    return json.load(f)


@pytest.fixture(scope="module")
def coca_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("coca"))
  helpers.run_train(workdir, "shapes_captioning.py:tiny,coca,source=audio,beam=2")
  return workdir


@pytest.mark.slow
def test_coca_run_scores_captions_and_retrieval(coca_run):
  m = _read(coca_run, "metrics.json")
  for key in (
    "captioning/bleu4",
    "captioning/cider",
    "retrieval/audio_to_text/R@5",
    "nearest_caption/cider",
  ):
    assert np.isfinite(m[key]), key
  assert "train/caption/token_accuracy" in m and "train/contrastive/loss" in m
  examples = _read(coca_run, "captioning.json")["examples"]
  assert examples and all(e["references"] for e in examples)


@pytest.mark.slow
def test_recognizer_starts_from_the_aligned_audio_tower(coca_run, tmp_path):
  workdir = str(tmp_path)
  proc = helpers.run_train(workdir, f"shapes_asr.py:tiny,init={coca_run},transcripts=0.5,beam=2")
  loaded = re.search(r"init_from \S+: loaded (\d+) of", proc.stderr)
  assert loaded and int(loaded.group(1)) > 0, proc.stderr[-2000:]  # the audio tower's
  m = _read(workdir, "metrics.json")
  assert np.isfinite(m["asr/wer"]) and np.isfinite(m["asr/cer"])
  assert np.isfinite(m["train/ctc/nll_per_label"])
  config = helpers.load_config("shapes_asr.py", "tiny,transcripts=0.5")
  assert config.data.num_train == 128 and config.data.text_is_speech
  chars = helpers.load_config("shapes_asr.py", "tiny,units=chars")
  assert chars.data.tokenizer == "byte" and chars.model.audio.hop_length == 80
  examples = _read(workdir, "asr.json")["examples"]
  assert examples and all(e["reference"] for e in examples)
