r"""Speech recognition on `shapes` speech (test voices held out): CTC on an audio tower.

  python train.py --config configs/shapes_asr.py --workdir /tmp/cmjax-asr
  python train.py --config configs/shapes_asr.py:stage=pretrain --workdir /tmp/cmjax-asr-pre
  python train.py --config configs/shapes_asr.py:init=/tmp/cmjax-asr-pre,transcripts=0.1 \
      --workdir /tmp/cmjax-asr-aligned

"Aided by text": `stage=pretrain` aligns the audio tower with a text tower
(CLIP's loss, or `loss=vicreg` etc. as in shapes_contrastive.py) on speech and
captions; `init=WORKDIR` then starts the recognizer's audio tower from that
run. The recognizer reads the transcripts of `transcripts=F` of the training
examples (the pretraining uses every pair). Same data, encoder and steps as
shapes_contrastive.py.

Variants: stage=pretrain|asr, init=WORKDIR, transcripts=F, loss=L (pretraining),
units=words|chars (the CTC labels: the word vocabulary, or UTF-8 bytes with a
4x finer audio frame rate),
beam=K (evaluator: 1 greedy, else CTC prefix beam search), seed=N, tiny,
steps=N, batch_size=N, workers=N, audio=E.
"""

import os

from cmjax import config_utils

HERE = os.path.dirname(os.path.abspath(__file__))


def get_config(arg=None):
  arg = config_utils.parse_arg(
    arg,
    stage="asr",
    init="",
    transcripts=1.0,
    loss="clip",
    beam=1,
    units="words",
    seed=0,
    tiny=False,
    steps=0,
    batch_size=0,
    workers=-1,
    audio="transformer",
  )
  if arg.stage not in ("asr", "pretrain"):
    raise ValueError(f"config argument stage={arg.stage!r}; expected 'asr' or 'pretrain'")
  if arg.units not in ("words", "chars"):
    raise ValueError(f"config argument units={arg.units!r}; expected 'words' or 'chars'")
  if not 0 < arg.transcripts <= 1:
    raise ValueError(f"config argument transcripts={arg.transcripts}: a fraction in (0, 1]")
  base = ",".join(f"{k}={arg[k]}" for k in ("tiny", "steps", "batch_size", "workers", "audio"))
  c = config_utils.load_config(
    os.path.join(HERE, "shapes_contrastive.py"), f"{base},loss={arg.loss}"
  )
  c.seed = arg.seed
  c.model.image = None
  c.data.text_is_speech = True  # the text of an example is what its speech says
  if arg.units == "chars":
    # CTC needs a frame per label and more: 4x the frame rate for the ~50
    # characters of a caption (the audio towers subsample 4x).
    c.data.update(tokenizer="byte", max_text_len=96)
    c.model.audio.hop_length = 80
  if arg.stage == "pretrain":
    c.model.modalities = ("audio", "text")
    c.evals = dict(retrieval=c.evals.retrieval.to_dict())
    return c
  c.model.update(name="ctc_recognizer", modalities=("audio",), source="audio")
  c.model.text = None
  c.data.num_train = max(int(round(c.data.num_train * arg.transcripts)), 1)
  c.objectives = dict(ctc=dict(type="ctc"))
  c.evals = dict(
    asr=dict(
      type="asr",
      every_steps=0,
      split="test",
      num_examples=32 if arg.tiny else 500,
      batch_size=16 if arg.tiny else 100,
      beam_size=arg.beam,
    )
  )
  if arg.init:
    c.init_from.update(path=arg.init, rules=[(r"(audio_encoder/.*)", r"\1")])
  return c
