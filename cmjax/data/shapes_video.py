"""Video clips for the ``shapes`` dataset: a scene's objects moving, and captions saying how.

Each object of the scene moves in a straight line in one of four directions
at constant speed, travelling ``TRAVEL_FRACTION`` of the frame side over the
clip; the background stays still. Captions name every object and its
direction ("a red circle moving left and a small blue square going up"),
so a clip can only be retrieved from its caption by telling the motion apart.
"""

from __future__ import annotations

import numpy as np

from cmjax.data import shapes_render
from cmjax.data.shapes_text import distinct, noun_phrase

DIRECTIONS = ("left", "right", "up", "down")
# Unit step per direction in (x, y) pixels, y pointing down.
_UNIT = np.array([(-1, 0), (1, 0), (0, -1), (0, 1)], np.float32)
TRAVEL_FRACTION = 0.4
_GAP = 1.0

DIRECTION_WORDS = (
  ("left", "to the left"),
  ("right", "to the right"),
  ("up", "upwards"),
  ("down", "downwards"),
)
_MOTION = ("{A} moving {D}", "{A} going {D}", "{A} that moves {D}", "{A} heading {D}")
_CLIP = ("{X}", "a video of {X}", "{X} in the video", "a clip of {X}")


def _trajectories(radii, directions, num_frames, size, rng, tries: int = 50):
  """Centres float32 [num_frames, n, 2] keeping objects inside and apart."""
  travel = TRAVEL_FRACTION * size
  t = np.linspace(0.0, 1.0, num_frames, dtype=np.float32)[:, None, None]
  best = None
  for _ in range(tries):
    starts = []
    for r, d in zip(radii, directions):
      lo, hi = r + 1, size - 1 - r
      start = rng.uniform(lo, hi, size=2).astype(np.float32)
      axis = 0 if d < 2 else 1
      sign = _UNIT[d][axis]
      # Leave room for the whole travel along the motion axis.
      start[axis] = rng.uniform(lo + travel, hi) if sign < 0 else rng.uniform(lo, hi - travel)
      starts.append(start)
    centres = np.stack(starts)[None] + t * travel * _UNIT[np.asarray(directions)][None]
    best = centres
    if len(radii) < 2:
      break
    apart = True
    for i in range(len(radii)):
      for j in range(i + 1, len(radii)):
        dist = np.hypot(*(centres[:, i] - centres[:, j]).T)
        apart &= bool(np.all(dist >= radii[i] + radii[j] + _GAP))
    if apart:
      break
  return best


def clip(
  objects: np.ndarray, num_frames: int, size: int, domain: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
  """Renders the scene's objects moving.

  Args:
    objects: int [n, >=3] rows of (shape, color, size, ...); positions are
      drawn anew for the clip.
    num_frames: F >= 2.
    size: frame side S in pixels.
    domain: background domain (see ``shapes_render.background``).
    rng: randomness for directions, positions and background.

  Returns:
    (video uint8 [F, S, S, 3], directions int32 [n], indices into DIRECTIONS).
  """
  n = len(objects)
  directions = rng.integers(len(DIRECTIONS), size=n).astype(np.int32)
  radii = [shapes_render.object_radius(int(o[2]), size) for o in objects]
  centres = _trajectories(radii, directions, num_frames, size, rng)
  # One background seed for every frame: the scene behind the objects is still.
  background_seed = int(rng.integers(2**62))
  frames = []
  for f in range(num_frames):
    rows = [
      (int(o[0]), int(o[1]), int(o[2]), float(c[0]), float(c[1]))
      for o, c in zip(objects, centres[f])
    ]
    frames.append(shapes_render.render(rows, size, domain, np.random.default_rng(background_seed)))
  return np.stack(frames), directions


def video_caption(objects, directions, rng: np.random.Generator) -> str:
  """One paraphrase naming every object (shape, color, size) and its direction."""
  parts = []
  for obj, d in zip(objects, directions):
    words = DIRECTION_WORDS[int(d)]
    direction = words[int(rng.integers(len(words)))]
    form = _MOTION[int(rng.integers(len(_MOTION)))]
    parts.append(form.format(A=noun_phrase(obj, rng), D=direction))
  text = " and ".join(parts)
  return _CLIP[int(rng.integers(len(_CLIP)))].format(X=text)


def video_captions(objects, directions, n: int, rng: np.random.Generator) -> list[str]:
  """``n`` distinct paraphrases (raises if the grammar cannot produce them)."""
  return distinct(lambda: video_caption(objects, directions, rng), n)


def vocabulary_words() -> set[str]:
  """Every word the video captions add to the image captions' vocabulary."""
  words = {"and"}
  for alternatives in DIRECTION_WORDS:
    for phrase in alternatives:
      words.update(phrase.split())
  for template in _MOTION + _CLIP:
    words.update(w for w in template.split() if not w.startswith("{"))
  return words
