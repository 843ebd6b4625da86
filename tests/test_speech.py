"""eSpeak NG synthesis through ctypes: output format, determinism, voices."""

import multiprocessing as mp

import numpy as np
import pytest

from cmjax.data import speech

TEXT = "a small red circle to the left of a large blue square"


@pytest.fixture(scope="module")
def speaker():
  return speech.Speaker(sample_rate=16000)


def test_waveform_format_and_loudness(speaker):
  wav = speaker.synthesize(TEXT, voice="en+m1", rate=175, pitch=50)
  assert wav.dtype == np.float32 and wav.ndim == 1
  assert np.all(np.abs(wav) <= 1.0)
  # ~11 words at 175 wpm: a couple of seconds, clearly not silent.
  assert 1.5 < wav.size / 16000 < 4.5
  assert np.sqrt(np.mean(wav**2)) > 0.02


def test_deterministic_regardless_of_history(speaker):
  a = speaker.synthesize(TEXT, voice="en+m1", rate=175, pitch=50)
  # Something else in between: eSpeak keeps static state across utterances.
  speaker.synthesize("hello world", voice="en+f2", rate=300, pitch=10)
  b = speaker.synthesize(TEXT, voice="en+m1", rate=175, pitch=50)
  assert np.array_equal(a, b)


def test_parameters_change_the_audio(speaker):
  base = speaker.synthesize(TEXT, voice="en+m1", rate=175, pitch=50)
  faster = speaker.synthesize(TEXT, voice="en+m1", rate=260, pitch=50)
  other_voice = speaker.synthesize(TEXT, voice="en+f3", rate=175, pitch=50)
  assert faster.size < 0.85 * base.size
  n = min(base.size, other_voice.size)
  assert not np.allclose(base[:n], other_voice[:n], atol=1e-3)


def test_sample_rate_scales_length():
  a = speech.Speaker(sample_rate=16000).synthesize("a red circle", voice="en+m3")
  b = speech.Speaker(sample_rate=8000).synthesize("a red circle", voice="en+m3")
  assert abs(b.size * 2 - a.size) <= 4


def test_voices_exist_and_splits_are_disjoint(speaker):
  assert set(speech.TRAIN_VOICES).isdisjoint(speech.TEST_VOICES)
  for v in speech.ALL_VOICES:
    assert speaker.synthesize("yes", voice=v).size > 1000, v


def test_bad_arguments(speaker):
  with pytest.raises(ValueError, match="voice"):
    speaker.synthesize("yes", voice="no-such-voice")
  with pytest.raises(ValueError, match="rate"):
    speaker.synthesize("yes", rate=10)
  with pytest.raises(ValueError, match="sample_rate"):
    speech.Speaker(sample_rate=0)


def _child(text, q):
  q.put(speech.Speaker().synthesize(text, voice="en+f1", rate=180, pitch=40))


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_worker_process_gives_same_samples(speaker, method):
  # Initialise in the parent first so a forked child inherits the engine.
  expected = speaker.synthesize("a blue star", voice="en+f1", rate=180, pitch=40)
  ctx = mp.get_context(method)
  q = ctx.Queue()
  p = ctx.Process(target=_child, args=("a blue star", q))
  p.start()
  got = q.get(timeout=60)
  p.join(timeout=60)
  assert p.exitcode == 0
  assert np.array_equal(got, expected)
