"""Speech synthesis with eSpeak NG through ctypes.

The PyPI package ``espeakng_loader`` ships ``libespeak-ng`` and its data
directory, so no system install is needed. We drive the C API in
*synchronous* mode: ``espeak_Synth`` returns only once the whole text has been
spoken, and a synth callback receives the int16 samples chunk by chunk.

The library is process-global C state (one voice, one callback), so:

* the engine is created lazily, once per process, keyed on ``os.getpid()`` so
  that a forked grain worker re-initialises instead of reusing the parent's
  state (and its lock); spawned workers simply start with no engine;
* every call takes a process-local lock, since eSpeak is not re-entrant;
* the shared library is loaded fresh for each utterance, because eSpeak keeps
  static state between utterances that would otherwise make the output
  depend on what was spoken before (see ``_Engine``).

Public API::

    speaker = Speaker()
    wav = speaker.synthesize("a red circle", voice="en+m1", rate=175, pitch=50)
    # wav: float32 [n] in [-1, 1] at speaker.sample_rate (default 16000 Hz)
"""

from __future__ import annotations

import _ctypes
import ctypes
import os
import threading
from math import gcd

import numpy as np
import scipy.signal

# eSpeak's own output rate for its standard (non-MBROLA) voices.
NATIVE_SAMPLE_RATE = 22050

# English voice variants from espeak-ng-data/voices/!v. The split is by
# speaker identity: the test split holds out two male and one female variant
# so that "unseen voice" generalisation can be measured.
TRAIN_VOICES: tuple[str, ...] = (
  "en+m1",
  "en+m2",
  "en+m3",
  "en+m4",
  "en+m5",
  "en+m6",
  "en+f1",
  "en+f2",
  "en+f3",
  "en+f4",
)
TEST_VOICES: tuple[str, ...] = ("en+m7", "en+m8", "en+f5")
ALL_VOICES: tuple[str, ...] = TRAIN_VOICES + TEST_VOICES

# Enum values from speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_RATE = 1
_ESPEAK_VOLUME = 2
_ESPEAK_PITCH = 3
_POS_CHARACTER = 1
_ESPEAK_CHARS_UTF8 = 1
_EE_OK = 0

# int callback(short *wav, int numsamples, espeak_EVENT *events)
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
  ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


def _load_library(path: str) -> ctypes.CDLL:
  """dlopen libespeak-ng and declare the C signatures we use."""
  lib = ctypes.CDLL(path)
  lib.espeak_Initialize.restype = ctypes.c_int
  lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
  lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
  lib.espeak_SetVoiceByName.restype = ctypes.c_int
  lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
  lib.espeak_SetParameter.restype = ctypes.c_int
  lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
  lib.espeak_ng_SetRandSeed.restype = None
  lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
  lib.espeak_Synth.restype = ctypes.c_int
  lib.espeak_Synth.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_uint,
    ctypes.c_int,
    ctypes.c_uint,
    ctypes.c_uint,
    ctypes.POINTER(ctypes.c_uint),
    ctypes.c_void_p,
  ]
  lib.espeak_Terminate.restype = ctypes.c_int
  return lib


class _Engine:
  """Per-process access to libespeak-ng (use ``_engine()``, not this).

  Why the library is re-loaded for every utterance: the wave generator
  keeps C ``static`` state across calls that no API resets (the pitch
  flutter table index, the roughness cycle counter, the gain control),
  so the same text spoken twice in a row gives different samples (we
  measured length and sample differences). ``espeak_Terminate`` does not
  clear it either. ``dlclose`` + ``dlopen`` maps fresh static data, which
  makes each utterance a pure function of (text, voice, rate, pitch). It
  costs about 1-2 ms per phrase, which we accept for reproducibility.
  """

  def __init__(self):
    import espeakng_loader

    self.library_path = espeakng_loader.get_library_path()
    self.data_path = espeakng_loader.get_data_path().encode()
    self.lock = threading.Lock()
    self.native_rate = NATIVE_SAMPLE_RATE
    self._chunks: list[np.ndarray] = []
    try:
      self._libc = ctypes.CDLL(None)  # eSpeak's breath noise uses rand()
    except OSError:  # pragma: no cover - non-glibc platforms
      self._libc = None

    def on_audio(wav, numsamples, events):
      # numsamples == 0 (and wav may be NULL) marks the end of synthesis.
      if numsamples > 0 and wav:
        self._chunks.append(np.ctypeslib.as_array(wav, (numsamples,)).copy())
      return 0  # 0 = keep going

    # Keep a reference: ctypes would free the trampoline otherwise.
    self._callback = _SYNTH_CALLBACK(on_audio)

  def synth(self, text: str, voice: str, rate: int, pitch: int) -> np.ndarray:
    """Speak ``text``; returns int16 [n] at ``self.native_rate``."""
    with self.lock:
      lib = _load_library(self.library_path)
      try:
        got = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, self.data_path, 0)
        if got <= 0:
          raise RuntimeError(f"espeak_Initialize failed (returned {got})")
        self.native_rate = got
        lib.espeak_SetSynthCallback(self._callback)
        if lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
          raise ValueError(f"voice: eSpeak NG does not know voice {voice!r}")
        lib.espeak_SetParameter(_ESPEAK_RATE, int(rate), 0)
        lib.espeak_SetParameter(_ESPEAK_PITCH, int(pitch), 0)
        lib.espeak_SetParameter(_ESPEAK_VOLUME, 100, 0)
        lib.espeak_ng_SetRandSeed(0)
        if self._libc is not None:
          self._libc.srand(0)
        buf = ctypes.create_string_buffer(text.encode("utf-8"))
        self._chunks = []
        err = lib.espeak_Synth(buf, len(buf), 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None)
        if err != _EE_OK:
          raise RuntimeError(f"espeak_Synth failed with error {err}")
        chunks, self._chunks = self._chunks, []
      finally:
        lib.espeak_Terminate()
        _ctypes.dlclose(lib._handle)
    if not chunks:
      return np.zeros((0,), np.int16)
    return np.concatenate(chunks)


_ENGINE: _Engine | None = None
_ENGINE_PID: int | None = None
_ENGINE_LOCK = threading.Lock()


def _engine() -> _Engine:
  """The per-process engine, (re)created after a fork."""
  global _ENGINE, _ENGINE_PID
  pid = os.getpid()
  if _ENGINE is None or _ENGINE_PID != pid:
    with _ENGINE_LOCK:
      if _ENGINE is None or _ENGINE_PID != pid:
        _ENGINE = _Engine()
        _ENGINE_PID = pid
  return _ENGINE


def resample(wav: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
  """Polyphase resampling of a float waveform [n] -> [~n * dst/src]."""
  if src_rate == dst_rate or wav.size == 0:
    return wav.astype(np.float32, copy=False)
  g = gcd(src_rate, dst_rate)
  out = scipy.signal.resample_poly(wav, dst_rate // g, src_rate // g)
  return out.astype(np.float32, copy=False)


def trim_silence(
  pcm: np.ndarray, rate: int, threshold: int = 100, margin_s: float = 0.02
) -> np.ndarray:
  """Cut leading/trailing samples with |x| < threshold (int16 units), [n] -> [m]."""
  loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) >= threshold)
  if loud.size == 0:
    return pcm[:0]
  margin = int(margin_s * rate)
  return pcm[max(loud[0] - margin, 0) : loud[-1] + margin + 1]


class Speaker:
  """Text-to-speech front end; cheap to construct and picklable.

  The C library is only touched on the first ``synthesize`` call in each
  process, so a ``Speaker`` can live inside a grain data source that is sent
  to worker processes.
  """

  def __init__(self, sample_rate: int = 16000):
    if not isinstance(sample_rate, int) or sample_rate <= 0:
      raise ValueError(f"sample_rate must be a positive int, got {sample_rate!r}")
    self.sample_rate = sample_rate

  def synthesize(
    self, text: str, *, voice: str = "en+m1", rate: int = 175, pitch: int = 50, trim: bool = True
  ) -> np.ndarray:
    """Speak ``text``.

    Args:
      text: what to say (plain text).
      voice: eSpeak voice name, e.g. ``"en+f3"`` (language + variant).
      rate: speaking rate in words per minute (eSpeak accepts 80-450).
      pitch: base pitch, 0-100 (50 is the voice's default).
      trim: drop the near-silent lead-in and the ~0.3 s tail eSpeak adds
        (keeping 20 ms either side), so the waveform is mostly speech.

    Returns:
      float32 [n] mono waveform in [-1, 1] at ``self.sample_rate``.
      Identical inputs give identical samples.
    """
    if not 80 <= rate <= 450:
      raise ValueError(f"rate must be in [80, 450] words/minute, got {rate}")
    if not 0 <= pitch <= 100:
      raise ValueError(f"pitch must be in [0, 100], got {pitch}")
    eng = _engine()
    pcm = eng.synth(text, voice, rate, pitch)
    if trim:
      pcm = trim_silence(pcm, eng.native_rate)
    wav = pcm.astype(np.float32) * np.float32(1.0 / 32768.0)
    wav = resample(wav, eng.native_rate, self.sample_rate)
    # Resampling can overshoot slightly on clipped peaks.
    return np.clip(wav, -1.0, 1.0, out=wav)


def add_noise(wav: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
  """``wav`` float32 [n] plus white noise at ``snr_db`` dB below its power, clipped to [-1, 1]."""
  power = float(np.mean(wav.astype(np.float64) ** 2)) if wav.size else 0.0
  noise_std = np.sqrt(power / 10 ** (snr_db / 10))
  noise = rng.standard_normal(wav.size).astype(np.float32) * np.float32(noise_std)
  return np.clip(wav + noise, -1.0, 1.0).astype(np.float32)
