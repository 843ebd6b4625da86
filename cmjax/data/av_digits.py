"""The ``av_digits`` dataset: handwritten digits seen and heard (see DESIGN.md).

An analogue of AV-MNIST built from what pip installs: the 1,797 real 8x8
handwritten digits bundled with scikit-learn (``sklearn.datasets.load_digits``)
paired with the digit's name spoken by an eSpeak NG voice. Both modalities are
degraded on purpose, so that neither alone solves the task and fusion pays:

* image: the 8x8 digit upscaled to ``image_size``, with Gaussian pixel noise
  (``image_noise``) and a random square occluder covering ``occlusion`` of the
  area;
* speech: the spoken name with white noise at an SNR drawn from
  ``snr_db`` (low values bury it).

Splits never share a handwritten image (a fixed 70/10/20 partition of the
1,797 digits) and test uses voices unseen in training (``holdout_voices``).
Example ``i`` is a pure function of ``(seed, split, i)`` and the options.

Fields: ``image`` uint8 [S,S,3]; ``speech`` float32 [n]; ``label`` int32 [];
``digit_index`` int32 [] (row of load_digits); ``voice`` int32 []; ``index``.
"""

from __future__ import annotations

import functools

import numpy as np

from cmjax.data import speech as speech_lib

SPLITS = ("train", "validation", "test")
SPLIT_FRACTIONS = (0.7, 0.1, 0.2)
DEFAULT_NUM_EXAMPLES = {"train": 10_000, "validation": 1_000, "test": 1_000}
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
  """(images float32 [1797, 8, 8] in [0, 1], labels int32 [1797])."""
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top

  d = load_digits()
  return (d.images / 16.0).astype(np.float32), d.target.astype(np.int32)


def split_indices(split: str) -> np.ndarray:
  """Rows of ``load_digits`` in ``split`` (a fixed partition, seed-independent)."""
  n = len(_digits()[1])
  order = np.random.default_rng(20261123).permutation(n)
  bounds = np.cumsum([0] + [int(round(f * n)) for f in SPLIT_FRACTIONS])
  bounds[-1] = n
  k = SPLITS.index(split)
  return np.sort(order[bounds[k] : bounds[k + 1]])


def degrade_image(
  digit: np.ndarray, image_size: int, noise: float, occlusion: float, rng: np.random.Generator
) -> np.ndarray:
  """8x8 float digit -> uint8 [S, S, 3]: upscaled, occluded, noisy."""
  scale = image_size // 8
  img = np.kron(digit, np.ones((scale, scale), np.float32))
  if occlusion > 0:
    side = int(round(np.sqrt(occlusion) * image_size))
    y, x = rng.integers(0, image_size - side + 1, size=2)
    img[y : y + side, x : x + side] = rng.uniform(0.0, 1.0)
  img = img + rng.normal(0.0, noise, img.shape).astype(np.float32)
  img = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
  return np.repeat(img[..., None], 3, axis=-1)


class AVDigitsSource:
  """Random-access source of ``av_digits`` examples (grain ``RandomAccessDataSource``).

  Args:
    split: 'train' | 'validation' | 'test'.
    seed: with split and index it fixes an example.
    num_examples: length of the split (pairs are drawn with replacement
      from the split's handwritten images).
    image_size: S, a multiple of 8 (>= 16).
    image_noise: std of the Gaussian pixel noise (pixels in [0, 1]).
    occlusion: fraction of the image area hidden by a random square.
    speech: synthesize the spoken digit (False: empty ``speech``).
    sample_rate: speech sample rate in Hz.
    snr_db: (low, high) range of the speech SNR in dB.
    holdout_voices: test uses speech.TEST_VOICES, the other splits TRAIN_VOICES.
    class_skew: Zipf exponent of the train split's label distribution
      (p(k) proportional to (k+1)**-class_skew); other splits stay uniform.
  """

  def __init__(
    self,
    *,
    split: str = "train",
    seed: int = 0,
    num_examples: int | None = None,
    image_size: int = 32,
    image_noise: float = 0.3,
    occlusion: float = 0.25,
    speech: bool = True,
    sample_rate: int = 16000,
    snr_db: tuple[float, float] = (-16.0, -4.0),
    holdout_voices: bool = True,
    class_skew: float = 0.0,
  ):
    def bad(option, value, why):
      raise ValueError(f"AVDigitsSource option {option}={value!r}: {why}")

    if split not in SPLITS:
      bad("split", split, f"must be one of {SPLITS}")
    if num_examples is None:
      num_examples = DEFAULT_NUM_EXAMPLES[split]
    if not isinstance(num_examples, (int, np.integer)) or num_examples < 1:
      bad("num_examples", num_examples, "must be a positive int")
    if not isinstance(image_size, (int, np.integer)) or image_size < 16 or image_size % 8:
      bad("image_size", image_size, "must be a multiple of 8, at least 16")
    if not 0 <= image_noise <= 2:
      bad("image_noise", image_noise, "must be in [0, 2]")
    if not 0 <= occlusion < 1:
      bad("occlusion", occlusion, "must be in [0, 1)")
    lo, hi = (float(v) for v in snr_db)
    if lo > hi:
      bad("snr_db", snr_db, "needs low <= high")
    if not 0 <= class_skew <= 10:
      bad("class_skew", class_skew, "must be in [0, 10]")
    self.split, self.split_id = split, SPLITS.index(split)
    self.seed, self.num_examples = int(seed), int(num_examples)
    self.image_size, self.image_noise = int(image_size), float(image_noise)
    self.occlusion, self.speech = float(occlusion), bool(speech)
    self.sample_rate, self.snr_db = int(sample_rate), (lo, hi)
    voices = (
      (speech_lib.TEST_VOICES if split == "test" else speech_lib.TRAIN_VOICES)
      if holdout_voices
      else speech_lib.ALL_VOICES
    )
    self.voice_ids = tuple(speech_lib.ALL_VOICES.index(v) for v in voices)
    images, labels = _digits()
    rows = split_indices(split)
    self.rows_by_label = [rows[labels[rows] == k] for k in range(10)]
    p = (np.arange(10) + 1.0) ** -float(class_skew if split == "train" else 0.0)
    self.label_probs = p / p.sum()
    self._images = images
    self._speaker = speech_lib.Speaker(sample_rate=self.sample_rate)

  def __len__(self) -> int:
    return self.num_examples

  def __repr__(self) -> str:
    return (
      f"AVDigitsSource(split={self.split!r}, seed={self.seed}, num_examples={self.num_examples})"
    )

  def __getitem__(self, index: int) -> dict:
    if not -self.num_examples <= index < self.num_examples:
      raise IndexError(f"index {index} out of range for {self.num_examples} examples")
    index = int(index) % self.num_examples
    seq = np.random.SeedSequence([self.seed, self.split_id, index, 1797])
    image_rng, speech_rng = (np.random.default_rng(s) for s in seq.spawn(2))
    label = int(image_rng.choice(10, p=self.label_probs))
    row = int(image_rng.choice(self.rows_by_label[label]))
    image = degrade_image(
      self._images[row], self.image_size, self.image_noise, self.occlusion, image_rng
    )
    i32 = np.int32
    ex = {"image": image, "label": i32(label), "digit_index": i32(row), "index": i32(index)}
    if self.speech:
      voice_id = self.voice_ids[int(speech_rng.integers(len(self.voice_ids)))]
      wav = self._speaker.synthesize(
        DIGIT_NAMES[label],
        voice=speech_lib.ALL_VOICES[voice_id],
        rate=int(speech_rng.integers(140, 221)),
        pitch=int(speech_rng.integers(30, 71)),
      )
      wav = speech_lib.add_noise(wav, speech_rng.uniform(*self.snr_db), speech_rng)
      ex.update(speech=wav, voice=i32(voice_id))
    else:
      ex.update(speech=np.zeros((0,), np.float32), voice=i32(-1))
    return ex
