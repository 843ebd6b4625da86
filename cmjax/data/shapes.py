"""The procedural tri-modal ``shapes`` dataset (see DESIGN.md, "Built-in data").

``ShapesSource`` is a grain random-access source: ``len(src)`` and ``src[i]``,
where example ``i`` is a pure function of ``(seed, split, i)`` and the options.
Each example draws four independent generators from
``np.random.SeedSequence([seed, split_id, i])`` -- scene+image, text, speech,
video -- so turning speech off (``speech=False``) or video on
(``video_frames > 0``) leaves images and captions unchanged.

Scene rules (they make every caption, negative and answer unambiguous):
* 1-3 objects with *distinct shapes*; colors and sizes may repeat;
* objects never overlap (a 2 px gap at least);
* object 0 is in exactly one relation to object 1: for left/right the x
  extents are disjoint and ``|dy| <= |dx| / 2``; for above/below the y extents
  are disjoint and ``|dx| <= |dy| / 2``.

Example fields (``S`` = image_size, ``K`` = max_objects, ``n`` = speech length):

=====================  ============  =================================================
``image``              uint8 [S,S,3] RGB
``captions``           list[str]     ``num_captions`` distinct paraphrases
``negative_caption``   str           one attribute of object 0/1 or the relation changed
``question``/``answer`` str          VQA pair; ``answer_label`` int32 index into ANSWERS
``pair_caption``       str           "the red circle and the blue square": objects 0 and 1
                                     named, not their relation ("" for one object)
``question_type``      int32 []      index into QUESTION_TYPES (attribute, existence, ...)
``swap_captions``      list[str]     [true, attribute-swapped, relation-swapped, order-swapped]
                                     captions in one canonical form ("" where the scene
                                     has no such swap; see shapes_text.swapped_captions)
``label``              int32 []      shape of object 0 (= ``shape_label``)
``shape_label``, ``color_label``, ``size_label``  int32 [] attributes of object 0
``num_objects``        int32 []
``relation_label``     int32 []      object 0 vs object 1 (RELATIONS index), -1 if one object
``domain``             int32 []
``objects``            int32 [K,5]   (shape, color, size, x, y) per object, -1 rows pad
``speech``             float32 [n]   one caption (or with spoken='question' the question)
                                     spoken (n = 0 when speech=False)
``speech_caption_index`` int32 []    which caption was spoken (-1 when speech=False or
                                     the question is spoken)
``voice``              int32 []      index into speech.ALL_VOICES (-1 when speech=False)
``speech_rate``        int32 []      words/minute actually used (-1 when speech=False)
``index``              int32 []      i
``video``              uint8 [F,V,V,3] only when video_frames F > 0: the scene's objects
                                     moving (V = video_size; see ``shapes_video``)
``video_captions``     list[str]     only when video_frames > 0: paraphrases naming
                                     each object and its direction of motion
``directions``         int32 [K]     only when video_frames > 0: direction per object
                                     (index into shapes_video.DIRECTIONS), -1 pad
=====================  ============  =================================================
"""

from __future__ import annotations

import numpy as np

from cmjax.data import shapes_render, shapes_text, shapes_video
from cmjax.data import speech as speech_lib
from cmjax.data.shapes_text import (  # noqa: F401  (re-exported public constants)
  ANSWERS,
  COLORS,
  QUESTION_TYPES,
  RELATIONS,
  SHAPES,
  SIZES,
  vocabulary,
)

# The renderer and the grammar must agree on what class k is.
assert shapes_render.SHAPE_KINDS == SHAPES

SPLITS = ("train", "validation", "test")
SPOKEN = ("caption", "question")
DEFAULT_NUM_EXAMPLES = {"train": 50_000, "validation": 1_000, "test": 1_000}
MAX_OBJECTS = 3
_GAP = 2.0  # minimum free pixels between objects


def shape_probabilities(class_skew: float) -> np.ndarray:
  """float64 [8] distribution of object 0's shape in the train split.

  ``class_skew`` is a Zipf exponent: p(k) proportional to (k+1)**-class_skew,
  so 0 is uniform and the imbalance ratio (most/least frequent class) is
  8**class_skew (e.g. 1.0 -> 8x, 2.0 -> 64x). Other splits stay uniform,
  the usual long-tailed set-up (balanced evaluation).
  """
  p = (np.arange(len(SHAPES)) + 1.0) ** -float(class_skew)
  return p / p.sum()


def _relation_ok(a, b, relation):
  """Is object a (x, y, r) unambiguously in ``relation`` to b (x, y, r)?"""
  dx, dy = a[0] - b[0], a[1] - b[1]
  if relation in (0, 1):  # left of / right of
    sep = -dx if relation == 0 else dx
    return sep >= a[2] + b[2] + _GAP and abs(dy) <= sep / 2
  sep = -dy if relation == 2 else dy  # above: smaller y (rows go down)
  return sep >= a[2] + b[2] + _GAP and abs(dx) <= sep / 2


def _place(rng, radii, relation, image_size):
  """Centres [n, 2] (x, y) satisfying the scene rules, by rejection sampling.

  Returns None if no layout was found (the caller re-draws the scene).
  """
  s = image_size
  centres = []
  for k, r in enumerate(radii):
    lo, hi = r + 1, s - 1 - r
    cand = rng.uniform(lo, hi, size=(64, 2))
    ok = np.ones(64, bool)
    for (x, y), r2 in zip(centres, radii):
      ok &= np.hypot(cand[:, 0] - x, cand[:, 1] - y) >= r + r2 + _GAP
    if k == 1:
      ok &= [
        _relation_ok((centres[0][0], centres[0][1], radii[0]), (cx, cy, r), relation)
        for cx, cy in cand
      ]
    idx = np.flatnonzero(ok)
    if idx.size == 0:
      return None
    centres.append(cand[idx[0]])
  return np.array(centres)


def _checked_options(
  *,
  split,
  seed,
  num_examples,
  image_size,
  min_objects,
  max_objects,
  domain,
  class_skew,
  num_captions,
  speech,
  sample_rate,
  max_speech_seconds,
  holdout_voices,
  noise_snr_db,
  speech_rates,
  video_frames,
  video_size,
  spoken,
):
  """Checks `ShapesSource`'s options, raising ValueError naming the bad one.

  Returns `(num_examples, (snr low, high), (rate low, high))`, resolved.
  """
  del speech, holdout_voices  # any bool will do

  def bad(option, value, why):
    raise ValueError(f"ShapesSource option {option}={value!r}: {why}")

  if split not in SPLITS:
    bad("split", split, f"must be one of {SPLITS}")
  if not isinstance(seed, (int, np.integer)) or seed < 0:
    bad("seed", seed, "must be a non-negative int")
  if num_examples is None:
    num_examples = DEFAULT_NUM_EXAMPLES[split]
  if not isinstance(num_examples, (int, np.integer)) or num_examples < 1:
    bad("num_examples", num_examples, "must be a positive int")
  if not isinstance(image_size, (int, np.integer)) or not 32 <= image_size <= 1024:
    bad("image_size", image_size, "must be an int in [32, 1024]")
  if not isinstance(min_objects, (int, np.integer)) or not 1 <= min_objects <= MAX_OBJECTS:
    bad("min_objects", min_objects, f"must be an int in [1, {MAX_OBJECTS}]")
  if (
    not isinstance(max_objects, (int, np.integer)) or not min_objects <= max_objects <= MAX_OBJECTS
  ):
    bad("max_objects", max_objects, f"must be an int in [min_objects, {MAX_OBJECTS}]")
  if domain not in (0, 1):
    bad("domain", domain, "must be 0 (plain) or 1 (textured, shifted palette)")
  if not isinstance(class_skew, (int, float)) or not 0 <= class_skew <= 10:
    bad("class_skew", class_skew, "must be a number in [0, 10] (Zipf exponent)")
  if not isinstance(num_captions, (int, np.integer)) or not 1 <= num_captions <= 10:
    bad("num_captions", num_captions, "must be an int in [1, 10]")
  if not isinstance(sample_rate, (int, np.integer)) or not 4000 <= sample_rate <= 48000:
    bad("sample_rate", sample_rate, "must be an int in [4000, 48000]")
  if not isinstance(max_speech_seconds, (int, float)) or not 0.5 <= max_speech_seconds <= 30:
    bad("max_speech_seconds", max_speech_seconds, "must be in [0.5, 30]")
  try:
    lo, hi = (float(v) for v in noise_snr_db)
  except (TypeError, ValueError):
    bad("noise_snr_db", noise_snr_db, "must be a (low, high) pair of numbers")
  if not lo <= hi:
    bad("noise_snr_db", noise_snr_db, "needs low <= high")
  try:
    rlo, rhi = (int(v) for v in speech_rates)
  except (TypeError, ValueError):
    bad("speech_rates", speech_rates, "must be a (low, high) pair of ints")
  if not 80 <= rlo <= rhi <= 400:
    bad("speech_rates", speech_rates, "needs 80 <= low <= high <= 400")

  if not isinstance(video_frames, (int, np.integer)) or not (
    video_frames == 0 or 2 <= video_frames <= 64
  ):
    bad("video_frames", video_frames, "must be 0 (no video) or an int in [2, 64]")
  if not isinstance(video_size, (int, np.integer)) or not 32 <= video_size <= 256:
    bad("video_size", video_size, "must be an int in [32, 256]")
  if spoken not in SPOKEN:
    bad("spoken", spoken, f"must be one of {SPOKEN}")
  return num_examples, (lo, hi), (rlo, rhi)


class ShapesSource:
  """Random-access source of ``shapes`` examples (grain ``RandomAccessDataSource``).

  All options are keyword-only; see the module docstring for the fields.

  Args:
    split: 'train' | 'validation' | 'test'.
    seed: dataset seed; with split and index it fixes an example.
    num_examples: length of the split (default 50_000 / 1_000 / 1_000).
    image_size: S >= 32.
    min_objects, max_objects: 1 <= min <= max <= 3.
    domain: 0 plain background, 1 textured/noisy background + shifted palette.
    class_skew: Zipf exponent for object 0's shape in the train split
      (see ``shape_probabilities``); 0 = uniform.
    num_captions: paraphrases per example (1..10).
    speech: synthesize speech (False = skip, much faster).
    sample_rate: speech sample rate in Hz.
    max_speech_seconds: speech longer than this is spoken faster (the rate
      is raised to fit) and, if still too long, cropped.
    holdout_voices: True -> test uses speech.TEST_VOICES, other splits
      TRAIN_VOICES; False -> every split uses all voices.
    noise_snr_db: (low, high) range of the additive white noise SNR in dB.
    speech_rates: (low, high) words per minute before the fit-to-length rule.
    video_frames: frames per clip of the objects moving (0 = no video).
    video_size: side of the video frames in pixels (>= 32; small, since a
      clip holds ``video_frames`` of them).
    spoken: what the speech says: 'caption' (one of the captions) or
      'question' (the VQA question, for spoken question answering).
  """

  def __init__(
    self,
    *,
    split: str = "train",
    seed: int = 0,
    num_examples: int | None = None,
    image_size: int = 64,
    min_objects: int = 1,
    max_objects: int = 3,
    domain: int = 0,
    class_skew: float = 0.0,
    num_captions: int = 5,
    speech: bool = True,
    sample_rate: int = 16000,
    max_speech_seconds: float = 4.0,
    holdout_voices: bool = True,
    noise_snr_db: tuple[float, float] = (10.0, 40.0),
    speech_rates: tuple[int, int] = (150, 210),
    video_frames: int = 0,
    video_size: int = 32,
    spoken: str = "caption",
  ):
    options = {k: v for k, v in locals().items() if k != "self"}
    num_examples, (lo, hi), (rlo, rhi) = _checked_options(**options)

    self.split = split
    self.split_id = SPLITS.index(split)
    self.seed = int(seed)
    self.num_examples = int(num_examples)
    self.image_size = int(image_size)
    self.min_objects, self.max_objects = int(min_objects), int(max_objects)
    self.domain = int(domain)
    self.class_skew = float(class_skew)
    self.num_captions = int(num_captions)
    self.speech = bool(speech)
    self.sample_rate = int(sample_rate)
    self.max_speech_seconds = float(max_speech_seconds)
    self.noise_snr_db = (lo, hi)
    self.speech_rates = (rlo, rhi)
    self.video_frames, self.video_size = int(video_frames), int(video_size)
    self.spoken = spoken
    if holdout_voices:
      voices = speech_lib.TEST_VOICES if split == "test" else speech_lib.TRAIN_VOICES
    else:
      voices = speech_lib.ALL_VOICES
    self.voice_ids = tuple(speech_lib.ALL_VOICES.index(v) for v in voices)
    skew = self.class_skew if split == "train" else 0.0
    self.shape_probs = shape_probabilities(skew)
    self._speaker = speech_lib.Speaker(sample_rate=self.sample_rate)

  def __len__(self) -> int:
    return self.num_examples

  def __repr__(self) -> str:
    return (
      f"ShapesSource(split={self.split!r}, seed={self.seed}, "
      f"num_examples={self.num_examples}, domain={self.domain})"
    )

  # -- scene -------------------------------------------------------------
  def _scene(self, rng):
    """(objects int32 [n,5], relation) drawn from ``rng``."""
    s = self.image_size
    while True:  # re-draw in the (rare) case no layout fits
      n = int(rng.integers(self.min_objects, self.max_objects + 1))
      first = int(rng.choice(len(SHAPES), p=self.shape_probs))
      rest = rng.permutation([k for k in range(len(SHAPES)) if k != first])[: n - 1]
      shapes = [first] + [int(k) for k in rest]
      colors = rng.integers(len(COLORS), size=n)
      sizes = rng.integers(len(SIZES), size=n)
      relation = int(rng.integers(len(RELATIONS))) if n > 1 else -1
      radii = [shapes_render.object_radius(int(z), s) for z in sizes]
      centres = _place(rng, radii, relation, s)
      if centres is not None:
        break
    objects = np.stack([shapes, colors, sizes, *np.round(centres).T.astype(int)], 1)
    return objects.astype(np.int32), relation

  # -- speech ------------------------------------------------------------
  def _speak(self, text: str, rng) -> tuple[np.ndarray, int, int]:
    """(waveform float32 [n], voice id, rate used) for ``text``."""
    voice_id = self.voice_ids[int(rng.integers(len(self.voice_ids)))]
    rate = int(rng.integers(self.speech_rates[0], self.speech_rates[1] + 1))
    pitch = int(rng.integers(30, 71))
    snr_db = rng.uniform(*self.noise_snr_db)
    voice = speech_lib.ALL_VOICES[voice_id]
    limit = int(self.max_speech_seconds * self.sample_rate)
    wav = self._speaker.synthesize(text, voice=voice, rate=rate, pitch=pitch)
    for _ in range(2):
      if wav.size <= limit or rate >= 450:
        break
      # Speak faster rather than lose the end of the sentence (duration
      # is roughly proportional to 1 / rate; 5% extra for safety).
      rate = min(int(np.ceil(rate * wav.size / limit * 1.05)), 450)
      wav = self._speaker.synthesize(text, voice=voice, rate=rate, pitch=pitch)
    return speech_lib.add_noise(wav[:limit], snr_db, rng), voice_id, rate

  # -- example -----------------------------------------------------------
  def __getitem__(self, index: int) -> dict:
    if not isinstance(index, (int, np.integer)):
      raise TypeError(f"index must be an int, got {type(index).__name__}")
    if not -self.num_examples <= index < self.num_examples:
      raise IndexError(f"index {index} out of range for {self.num_examples} examples")
    index = int(index) % self.num_examples
    seq = np.random.SeedSequence([self.seed, self.split_id, index])
    # spawn(4)[:3] equals spawn(3): adding the video stream changed nothing else.
    scene_rng, text_rng, speech_rng, video_rng = (np.random.default_rng(s) for s in seq.spawn(4))

    objects, relation = self._scene(scene_rng)
    image = shapes_render.render(objects, self.image_size, self.domain, scene_rng)

    triples = [tuple(int(v) for v in o[:3]) for o in objects]
    caps = shapes_text.captions(triples, relation, self.num_captions, text_rng)
    neg, _ = shapes_text.negative(triples, relation, text_rng)
    positions = [(int(o[3]), int(o[4])) for o in objects]
    q, a, q_type = shapes_text.question(triples, relation, text_rng, positions)

    padded = np.full((self.max_objects, 5), -1, np.int32)
    padded[: len(objects)] = objects
    i32 = np.int32
    ex = {
      "image": image,
      "captions": caps,
      "negative_caption": neg,
      "question": q,
      "answer": a,
      "answer_label": i32(ANSWERS.index(a)),
      "question_type": i32(q_type),
      "swap_captions": shapes_text.swapped_captions(triples, relation),
      "pair_caption": shapes_text.pair_caption(triples),
      "label": i32(objects[0, 0]),
      "shape_label": i32(objects[0, 0]),
      "color_label": i32(objects[0, 1]),
      "size_label": i32(objects[0, 2]),
      "num_objects": i32(len(objects)),
      "relation_label": i32(relation),
      "domain": i32(self.domain),
      "objects": padded,
      "index": i32(index),
    }
    if self.video_frames:
      video, directions = shapes_video.clip(
        objects, self.video_frames, self.video_size, self.domain, video_rng
      )
      padded_dirs = np.full((self.max_objects,), -1, np.int32)
      padded_dirs[: len(objects)] = directions
      ex.update(
        video=video,
        directions=padded_dirs,
        video_captions=shapes_video.video_captions(
          triples, directions, self.num_captions, video_rng
        ),
      )
    if self.speech and self.spoken == "question":
      wav, voice_id, rate = self._speak(q, speech_rng)
      ex.update(
        speech=wav, speech_caption_index=i32(-1), voice=i32(voice_id), speech_rate=i32(rate)
      )
    elif self.speech:
      k = int(speech_rng.integers(self.num_captions))
      wav, voice_id, rate = self._speak(caps[k], speech_rng)
      ex.update(speech=wav, speech_caption_index=i32(k), voice=i32(voice_id), speech_rate=i32(rate))
    else:
      ex.update(
        speech=np.zeros((0,), np.float32),
        speech_caption_index=i32(-1),
        voice=i32(-1),
        speech_rate=i32(-1),
      )
    return ex
