"""Caption, negative and question grammar for the ``shapes`` dataset.

All text is lower case, words separated by single spaces, no punctuation.
Objects are described with the canonical words most of the time
(``CANONICAL_PROB``) and with synonyms otherwise ("box" for square), so the
canonical words that zero-shot prompts use are the most frequent ones.

An object is a tuple ``(shape, color, size)`` of class indices; a scene
description is ``(objects, relation)`` where ``relation`` is the relation of
object 0 to object 1 (index into ``RELATIONS``) or -1 for one object.
"""

from __future__ import annotations

import re

import numpy as np

SHAPES = ("circle", "square", "triangle", "diamond", "star", "cross", "hexagon", "ring")
COLORS = ("red", "green", "blue", "yellow", "purple", "orange", "cyan", "white")
SIZES = ("small", "large")
# Relation of object 0 with respect to object 1 ("A is left of B").
RELATIONS = ("left of", "right of", "above", "below")
INVERSE_RELATION = (1, 0, 3, 2)
NUMBERS = ("zero", "one", "two", "three")
ANSWERS = ("yes", "no") + NUMBERS[1:] + SHAPES + COLORS + SIZES

# Canonical word first; the others are synonyms used in captions only.
SHAPE_WORDS = (
  ("circle", "disk"),
  ("square", "box"),
  ("triangle",),
  ("diamond", "rhombus"),
  ("star",),
  ("cross",),
  ("hexagon",),
  ("ring", "donut"),
)
COLOR_WORDS = (
  tuple((c,) for c in COLORS[:4]) + (("purple", "violet"),) + tuple((c,) for c in COLORS[5:])
)
SIZE_WORDS = (("small", "little", "tiny"), ("large", "big"))
RELATION_WORDS = (
  ("to the left of", "left of", "on the left of"),
  ("to the right of", "right of", "on the right of"),
  ("above", "over"),
  ("below", "under", "beneath"),
)
# "...and <A> is <phrase>" where "it" is object 1.
RELATION_ITS = (
  ("to its left", "on its left"),
  ("to its right", "on its right"),
  ("above it",),
  ("below it", "under it"),
)
CANONICAL_PROB = 0.6

# Noun phrase forms: {a} article, {s} size, {c} color, {h} shape.
_NP_FORMS = (
  "{a} {s} {c} {h}",
  "{a} {c} {h} that is {s}",
  "{a} {s} {h} that is {c}",
  "{a} {h} that is {s} and {c}",
)
_NP_WEIGHTS = np.array([0.55, 0.15, 0.15, 0.15])
_ONE = (
  "{A}",
  "there is {A}",
  "there is {A} in the image",
  "an image of {A}",
  "a picture with {A}",
  "the image shows {A}",
  "just {A}",
  "{A} is the only object",
)
# {P}: phrase for relation of A to B; {Q}: phrase for the inverse; {I}: "its" form.
_TWO = (
  "{A} {P} {B}",
  "{A} is {P} {B}",
  "there is {A} {P} {B}",
  "{B} {Q} {A}",
  "{B} is {Q} {A}",
  "there is {B} and {A} is {I}",
  "{P} {B} there is {A}",
  "{Q} {A} is {B}",
  "an image of {A} {P} {B}",
)
_THIRD = ("and there is also {C}", "and also {C}", "along with {C}")
_QUESTIONS = (
  "what color is the {h}",
  "what size is the {h}",
  "is there a {h}",
  "is there {a} {c} {h}",
  "how many objects are there",
  "what shape is the {c} object",
  "is the {h} {R} the {h2}",
)


def _pick(rng: np.random.Generator, words: tuple[str, ...]) -> str:
  """Canonical word with probability CANONICAL_PROB, else a synonym."""
  if len(words) == 1 or rng.random() < CANONICAL_PROB:
    return words[0]
  return words[1 + int(rng.integers(len(words) - 1))]


def _article(next_word: str) -> str:
  return "an" if next_word[0] in "aeiou" else "a"


def noun_phrase(obj, rng: np.random.Generator) -> str:
  """'a small red circle' and its variants for obj = (shape, color, size)."""
  shape, color, size = obj
  form = _NP_FORMS[rng.choice(len(_NP_FORMS), p=_NP_WEIGHTS)]
  s, c, h = (
    _pick(rng, SIZE_WORDS[size]),
    _pick(rng, COLOR_WORDS[color]),
    _pick(rng, SHAPE_WORDS[shape]),
  )
  first = form.split()[1].strip("{}")
  a = _article({"s": s, "c": c, "h": h}[first])
  return form.format(a=a, s=s, c=c, h=h)


def caption(objects, relation: int, rng: np.random.Generator) -> str:
  """One paraphrase describing all objects (<= 3) and the 0-vs-1 relation."""
  a = noun_phrase(objects[0], rng)
  if len(objects) == 1:
    return _ONE[int(rng.integers(len(_ONE)))].format(A=a)
  b = noun_phrase(objects[1], rng)
  t = _TWO[int(rng.integers(len(_TWO)))]
  text = t.format(
    A=a,
    B=b,
    P=_pick(rng, RELATION_WORDS[relation]),
    Q=_pick(rng, RELATION_WORDS[INVERSE_RELATION[relation]]),
    I=_pick(rng, RELATION_ITS[relation]),
  )
  for obj in objects[2:]:
    text += " " + _THIRD[int(rng.integers(len(_THIRD)))].format(C=noun_phrase(obj, rng))
  return text


def distinct(make_one, n: int, max_tries: int = 200) -> list[str]:
  """``n`` distinct strings from repeated ``make_one()`` calls (raises if it cannot)."""
  out: list[str] = []
  for _ in range(max_tries):
    c = make_one()
    if c not in out:
      out.append(c)
      if len(out) == n:
        return out
  raise RuntimeError(f"could only make {len(out)} distinct captions, wanted {n}")


def captions(objects, relation: int, n: int, rng: np.random.Generator) -> list[str]:
  """``n`` distinct paraphrases (raises if the grammar cannot produce them)."""
  return distinct(lambda: caption(objects, relation, rng), n)


def negative(objects, relation: int, rng: np.random.Generator):
  """Hard negative: the scene with one attribute of object 0/1 or the relation changed.

  New shapes are drawn from shapes absent from the scene and shapes are
  unique within a scene, so the changed description matches no object.
  Returns (caption, what_changed).
  """
  objs = [tuple(o) for o in objects]
  kinds = ["shape0", "color0", "size0"]
  if len(objs) > 1:
    kinds += ["shape1", "color1", "size1", "relation"]
  kind = kinds[int(rng.integers(len(kinds)))]
  if kind == "relation":
    relation = int(rng.choice([r for r in range(4) if r != relation]))
  else:
    attr, k = {"shape": 0, "color": 1, "size": 2}[kind[:-1]], int(kind[-1])
    if attr == 0:
      present = {o[0] for o in objs}
      choices = [s for s in range(len(SHAPES)) if s not in present]
    else:
      n = len(COLORS) if attr == 1 else len(SIZES)
      choices = [v for v in range(n) if v != objs[k][attr]]
    o = list(objs[k])
    o[attr] = int(rng.choice(choices))
    objs[k] = tuple(o)
  return caption(objs, relation, rng), kind


def question(objects, relation: int, rng: np.random.Generator) -> tuple[str, str]:
  """A (question, answer) pair answerable from the image; canonical words only."""
  n = len(objects)
  colors = [o[1] for o in objects]
  unique_colors = [c for c in colors if colors.count(c) == 1]
  kinds = [0, 1, 2, 3, 4] + ([5] if unique_colors else []) + ([6] if n > 1 else [])
  kind = kinds[int(rng.integers(len(kinds)))]
  obj = objects[int(rng.integers(n))]
  if kind == 0:
    return f"what color is the {SHAPES[obj[0]]}", COLORS[obj[1]]
  if kind == 1:
    return f"what size is the {SHAPES[obj[0]]}", SIZES[obj[2]]
  present = {o[0] for o in objects}
  if kind in (2, 3):
    yes = rng.random() < 0.5
    if kind == 2:
      shape = (
        obj[0] if yes else int(rng.choice([s for s in range(len(SHAPES)) if s not in present]))
      )
      return f"is there a {SHAPES[shape]}", "yes" if yes else "no"
    color = obj[1] if yes else int(rng.choice([c for c in range(len(COLORS)) if c != obj[1]]))
    # Shapes are unique in a scene, so (color, shape) is "yes" iff it is obj.
    c = COLORS[color]
    return f"is there {_article(c)} {c} {SHAPES[obj[0]]}", "yes" if yes else "no"
  if kind == 4:
    return "how many objects are there", NUMBERS[n]
  if kind == 5:
    color = unique_colors[int(rng.integers(len(unique_colors)))]
    shape = objects[colors.index(color)][0]
    return f"what shape is the {COLORS[color]} object", SHAPES[shape]
  asked = relation if rng.random() < 0.5 else int(rng.integers(4))
  return (
    f"is the {SHAPES[objects[0][0]]} {RELATION_WORDS[asked][0]} the {SHAPES[objects[1][0]]}",
    "yes" if asked == relation else "no",
  )


def vocabulary() -> list[str]:
  """Sorted list of every word any caption (video ones too), negative, question or answer can contain."""
  words: set[str] = {"a", "an"}
  groups = (SHAPE_WORDS, COLOR_WORDS, SIZE_WORDS, RELATION_WORDS, RELATION_ITS)
  for group in groups:
    for alternatives in group:
      for phrase in alternatives:
        words.update(phrase.split())
  for template in _NP_FORMS + _ONE + _TWO + _THIRD + _QUESTIONS:
    words.update(w for w in template.split() if not re.fullmatch(r"\{\w+\}", w))
  words.update(ANSWERS)
  from cmjax.data import shapes_video  # pylint: disable=g-import-not-at-top  (cycle)

  words.update(shapes_video.vocabulary_words())
  return sorted(words)
