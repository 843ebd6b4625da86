"""The av_digits dataset: real digits, spoken names, disjoint splits, degradation."""

import numpy as np
import pytest

from cmjax.data import av_digits, speech


def test_splits_partition_the_digits():
  parts = [set(av_digits.split_indices(s)) for s in av_digits.SPLITS]
  assert sum(len(p) for p in parts) == 1797
  assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])


def test_examples_pair_a_digit_image_with_its_spoken_name():
  src = av_digits.AVDigitsSource(
    split="test", num_examples=12, image_noise=0.0, occlusion=0.0, snr_db=(40.0, 40.0)
  )
  images, labels = av_digits._digits()  # pylint: disable=protected-access
  test_rows = set(av_digits.split_indices("test"))
  for i in range(len(src)):
    ex = src[i]
    assert ex["image"].shape == (32, 32, 3) and ex["image"].dtype == np.uint8
    row = int(ex["digit_index"])
    assert row in test_rows and labels[row] == ex["label"]
    # Undegraded, the image is the upscaled digit.
    np.testing.assert_allclose(ex["image"][::4, ::4, 0] / 255.0, images[row], atol=1 / 255)
    assert speech.ALL_VOICES[ex["voice"]] in speech.TEST_VOICES
    assert 0.2 * 16000 < ex["speech"].size < 1.5 * 16000
  np.testing.assert_array_equal(src[3]["speech"], src[3]["speech"])  # deterministic


def test_degradation_options_degrade():
  clean = av_digits.AVDigitsSource(
    split="train", num_examples=4, image_noise=0.0, occlusion=0.0, speech=False
  )[2]["image"]
  noisy = av_digits.AVDigitsSource(split="train", num_examples=4, speech=False)[2]["image"]
  assert np.mean(np.abs(noisy.astype(float) - clean)) > 40
  quiet = av_digits.AVDigitsSource(split="train", num_examples=2, snr_db=(30.0, 30.0))[1]
  loud = av_digits.AVDigitsSource(split="train", num_examples=2, snr_db=(-10.0, -10.0))[1]
  assert np.std(loud["speech"]) > 2 * np.std(quiet["speech"])


def test_class_skew_skews_only_train():
  train = av_digits.AVDigitsSource(split="train", num_examples=600, class_skew=1.5, speech=False)
  counts = np.bincount([int(train[i]["label"]) for i in range(600)], minlength=10)
  assert counts[0] > 5 * counts[9]
  test = av_digits.AVDigitsSource(split="test", num_examples=10, class_skew=1.5, speech=False)
  np.testing.assert_allclose(test.label_probs, 0.1)


@pytest.mark.parametrize(
  "option, value",
  [("image_size", 30), ("occlusion", 1.0), ("snr_db", (5.0, 0.0)), ("split", "dev")],
)
def test_bad_options_name_the_option(option, value):
  with pytest.raises(ValueError, match=option):
    av_digits.AVDigitsSource(**{option: value})
