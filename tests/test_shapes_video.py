"""The video modality of the shapes data: clips, motion, captions, pipeline."""

import numpy as np
import pytest

from cmjax.data import shapes, shapes_render, shapes_text, shapes_video
from cmjax.data.tokenizers import get_tokenizer

F, V = 8, 32


@pytest.fixture(scope="module")
def clips():
  src = shapes.ShapesSource(
    split="validation", num_examples=40, speech=False, max_objects=2, video_frames=F, video_size=V
  )
  return [src[i] for i in range(len(src))]


def _colour_centroid(frame, rgb):
  """(x, y) centroid of the pixels within 40 of colour `rgb`, or None."""
  d = np.abs(frame.astype(np.int32) - np.asarray(rgb, np.int32)).sum(-1)
  ys, xs = np.nonzero(d < 40)
  return None if xs.size < 3 else np.array([xs.mean(), ys.mean()])


def test_fields(clips):
  ex = clips[0]
  assert ex["video"].shape == (F, V, V, 3) and ex["video"].dtype == np.uint8
  assert ex["directions"].shape == (2,) and ex["directions"].dtype == np.int32
  n = int(ex["num_objects"])
  assert np.all((ex["directions"][:n] >= 0) & (ex["directions"][:n] < 4))
  assert np.all(ex["directions"][n:] == -1)
  assert len(ex["video_captions"]) == 5 and len(set(ex["video_captions"])) == 5


def test_objects_move_in_the_recorded_direction(clips):
  checked = 0
  for ex in clips:
    if ex["num_objects"] != 1:
      continue  # with one object its colour identifies it
    color = int(ex["objects"][0, 1])
    first = _colour_centroid(ex["video"][0], shapes_render.PALETTE[color])
    last = _colour_centroid(ex["video"][-1], shapes_render.PALETTE[color])
    if first is None or last is None:
      continue
    dx, dy = last - first
    expected = {0: (dx < -5), 1: (dx > 5), 2: (dy < -5), 3: (dy > 5)}
    assert expected[int(ex["directions"][0])], (ex["directions"][0], dx, dy)
    # Travel is along one axis only.
    assert min(abs(dx), abs(dy)) < 2.0
    checked += 1
  assert checked >= 5


def test_background_is_still_and_frames_differ(clips):
  video = clips[0]["video"].astype(np.int32)
  corner = video[:, :2, :2]
  assert np.all(corner == corner[0])
  assert np.any(video[0] != video[-1])


def test_captions_name_each_object_and_its_direction(clips):
  for ex in clips:
    n = int(ex["num_objects"])
    for cap in ex["video_captions"]:
      for obj, d in zip(ex["objects"][:n], ex["directions"][:n]):
        assert any(w in cap for w in shapes_text.SHAPE_WORDS[obj[0]]), cap
        assert any(w in cap for w in shapes_video.DIRECTION_WORDS[d]), cap
      if n == 2:
        assert " and " in cap, cap


def test_video_captions_are_in_the_vocabulary(clips):
  tok = get_tokenizer("word")
  for ex in clips:
    for cap in ex["video_captions"]:
      ids, mask = tok.pad(cap, 40)
      assert 1 not in ids[mask], cap  # 1 = <unk>


def test_video_option_leaves_the_other_fields_unchanged():
  plain = shapes.ShapesSource(split="train", num_examples=4, speech=False)[3]
  video = shapes.ShapesSource(split="train", num_examples=4, speech=False, video_frames=4)[3]
  np.testing.assert_array_equal(plain["image"], video["image"])
  assert plain["captions"] == video["captions"]
  assert "video" not in plain


@pytest.mark.parametrize(
  "option, value", [("video_frames", 1), ("video_frames", -2), ("video_size", 16)]
)
def test_bad_video_options_name_the_option(option, value):
  with pytest.raises(ValueError, match=option):
    shapes.ShapesSource(split="train", num_examples=2, **{option: value})
