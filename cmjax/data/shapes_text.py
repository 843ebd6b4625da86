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
_CANONICAL = ("{A} is {P} {B}",)  # swapped_captions
# What kinds of question there are (the `question_type` of an example).
QUESTION_TYPES = ("attribute", "existence", "count", "relation", "compare")
_QUESTIONS = (
  "what color is the {h}",
  "what size is the {h}",
  "what shape is the {c} object",
  "is there a {h}",
  "is there {a} {c} {h}",
  "how many objects are there",
  "what is {R} the {c} {h}",
  "what color is the object {R} the {h}",
  "is the {h} {R} the {h2}",
  "is the color of the {h} the color of the {h2}",
  "is the size of the {h} the size of the {h2}",
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


# The negatives of `swapped_captions`, in its order after the true caption.
SWAP_TYPES = ("attribute", "relation", "order")


def _canonical(objects, relation: int) -> str:
  """'a small red circle is to the left of a large blue square [and there is also ...]'."""

  def np_(o):
    return f"a {SIZES[o[2]]} {COLORS[o[1]]} {SHAPES[o[0]]}"

  text = f"{np_(objects[0])} is {RELATION_WORDS[relation][0]} {np_(objects[1])}"
  return text + "".join(f" and there is also {np_(o)}" for o in objects[2:])


def pair_caption(objects) -> str:
  """'the red circle and the blue square': objects 0 and 1 named, their relation
  not ("" for one object); the text of relation classification."""
  if len(objects) < 2:
    return ""
  a, b = objects[0], objects[1]
  return f"the {COLORS[a[1]]} {SHAPES[a[0]]} and the {COLORS[b[1]]} {SHAPES[b[0]]}"


def swapped_captions(objects, relation: int) -> list[str]:
  """[true caption, attribute-swapped, relation-swapped, order-swapped], all in
  one canonical form, for compositional evaluation (Winoground / ARO style).

  * attribute: objects 0 and 1 exchange their colours (or, if those agree,
    their sizes): the same words, bound to the wrong objects;
  * relation: the relation replaced by its inverse (one word differs);
  * order: objects 0 and 1 exchange places in the sentence: the same words
    in another order.
  Every negative is false of the scene (shapes are unique in a scene). ""
  where there is no such negative: every entry for one object, the attribute
  swap when both colours and both sizes agree.
  """
  objs = [tuple(int(v) for v in o[:3]) for o in objects]
  if len(objs) < 2:
    return ["", "", "", ""]
  a, b = objs[0], objs[1]
  attr = 1 if a[1] != b[1] else 2 if a[2] != b[2] else None
  attribute = ""
  if attr is not None:
    a2, b2 = list(a), list(b)
    a2[attr], b2[attr] = b[attr], a[attr]
    attribute = _canonical([tuple(a2), tuple(b2)] + objs[2:], relation)
  return [
    _canonical(objs, relation),
    attribute,
    _canonical(objs, INVERSE_RELATION[relation]),
    _canonical([b, a] + objs[2:], relation),
  ]


def _loosely(a, b, relation: int) -> bool:
  """Could object centre a (x, y) be called `relation` of centre b by anyone?

  The scene rules put object 0 strictly in its relation to object 1; a third
  object that is even loosely in the asked relation makes a "what is <rel>
  the <Y>" question ambiguous, so such questions are not asked.
  """
  dx, dy = a[0] - b[0], a[1] - b[1]
  return (dx < 0, dx > 0, dy < 0, dy > 0)[relation]


def _relation_question(objects, relation, positions, rng):
  """'what is left of the red circle' -> shape, or 'what color is the object
  above the star' -> color; None when a third object would make it ambiguous."""
  target, ref, rel = (0, 1, relation) if rng.random() < 0.5 else (1, 0, INVERSE_RELATION[relation])
  for k in range(len(objects)):
    if k not in (target, ref) and (
      positions is None or _loosely(positions[k], positions[ref], rel)
    ):
      return None
  shape, color = objects[ref][0], objects[ref][1]
  named = f"{COLORS[color]} {SHAPES[shape]}" if rng.random() < 0.5 else SHAPES[shape]
  phrase = RELATIONS[rel]
  if rng.random() < 0.5:
    return f"what is {phrase} the {named}", SHAPES[objects[target][0]]
  return f"what color is the object {phrase} the {named}", COLORS[objects[target][1]]


def _compare_question(objects, rng):
  """'is the color of the circle the color of the star': yes/no on a random pair, each
  answer half the time; None when a colour 'no' is rejected (see below)."""
  i, j = (int(k) for k in rng.permutation(len(objects))[:2])
  attr = int(rng.integers(2))  # 0 color, 1 size
  same = objects[i][1 + attr] == objects[j][1 + attr]
  # Colours are independent uniform draws over 8: a pair shares one with p 1/8.
  # Keeping a "no" with p 1/7 makes yes and no equally likely for every pair of
  # shapes, so the words of the question do not give the answer away.
  if attr == 0 and not same and rng.random() >= 1 / 7:
    return None
  word = ("color", "size")[attr]
  # Worded with the grammar's existing words: a new word would renumber the
  # vocabulary, which acts like a new initialisation seed for every run.
  a, b = SHAPES[objects[i][0]], SHAPES[objects[j][0]]
  return f"is the {word} of the {a} the {word} of the {b}", "yes" if same else "no"


def question(objects, relation: int, rng: np.random.Generator, positions=None):
  """A (question, answer, type) triple answerable from the image; canonical words only.

  `type` indexes QUESTION_TYPES: attribute (colour, size or shape of a named
  object), existence, count, relation ("what is left of the red circle", "is
  the star above the ring") and compare ("is the size of the circle the size of
  the star"). The type is drawn uniformly among those the scene allows
  (relation and compare need two objects); yes/no answers are balanced. `positions`:
  object centres [(x, y), ...], needed to rule out ambiguous relation questions
  in scenes of three objects (without them such scenes get none).
  """
  kind = int(rng.integers(len(QUESTION_TYPES)))
  # About half the scenes have one object (layouts of two or three are redrawn
  # more often), so half of their count questions become attribute or
  # existence ones: the answers of "how many objects are there" are then about
  # equally frequent. Relation and compare need two objects.
  if len(objects) == 1 and (kind > 2 or (kind == 2 and rng.random() < 0.5)):
    kind = int(rng.integers(2))
  # A kind's rejected draws are redrawn within the kind, so the kinds stay
  # equally frequent (an ambiguous 'what is left of' becomes a yes/no one).
  while True:
    qa = _question_of_kind(kind, objects, relation, positions, rng)
    if qa is not None:
      return qa[0], qa[1], kind


def _question_of_kind(kind, objects, relation, positions, rng):
  n = len(objects)
  obj = objects[int(rng.integers(n))]
  if kind == 0:  # attribute
    colors = [o[1] for o in objects]
    unique_colors = [c for c in colors if colors.count(c) == 1]
    form = int(rng.integers(3 if unique_colors else 2))
    if form == 0:
      return f"what color is the {SHAPES[obj[0]]}", COLORS[obj[1]]
    if form == 1:
      return f"what size is the {SHAPES[obj[0]]}", SIZES[obj[2]]
    color = unique_colors[int(rng.integers(len(unique_colors)))]
    return f"what shape is the {COLORS[color]} object", SHAPES[objects[colors.index(color)][0]]
  if kind == 1:  # existence
    present = {o[0] for o in objects}
    yes = rng.random() < 0.5
    if rng.random() < 0.5:
      absent = [s for s in range(len(SHAPES)) if s not in present]
      shape = obj[0] if yes else int(rng.choice(absent))
      return f"is there a {SHAPES[shape]}", "yes" if yes else "no"
    color = obj[1] if yes else int(rng.choice([c for c in range(len(COLORS)) if c != obj[1]]))
    # Shapes are unique in a scene, so (color, shape) is "yes" iff it is obj.
    c = COLORS[color]
    return f"is there {_article(c)} {c} {SHAPES[obj[0]]}", "yes" if yes else "no"
  if kind == 2:  # count
    return "how many objects are there", NUMBERS[n]
  if kind == 3:  # relation
    if rng.random() < 0.5:
      return _relation_question(objects, relation, positions, rng)
    a, b = (0, 1) if rng.random() < 0.5 else (1, 0)
    truth = relation if a == 0 else INVERSE_RELATION[relation]
    asked = truth if rng.random() < 0.5 else int(rng.choice([r for r in range(4) if r != truth]))
    return (
      f"is the {SHAPES[objects[a][0]]} {RELATIONS[asked]} the {SHAPES[objects[b][0]]}",
      "yes" if asked == truth else "no",
    )
  return _compare_question(objects, rng)


def vocabulary() -> list[str]:
  """Sorted list of every word any caption (video ones too), negative, question or answer can contain."""
  words: set[str] = {"a", "an"}
  groups = (SHAPE_WORDS, COLOR_WORDS, SIZE_WORDS, RELATION_WORDS, RELATION_ITS)
  for group in groups:
    for alternatives in group:
      for phrase in alternatives:
        words.update(phrase.split())
  for template in _NP_FORMS + _ONE + _TWO + _THIRD + _CANONICAL + _QUESTIONS:
    words.update(w for w in template.split() if not re.fullmatch(r"\{\w+\}", w))
  words.update(ANSWERS)
  from cmjax.data import shapes_video  # pylint: disable=g-import-not-at-top  (cycle)

  words.update(shapes_video.vocabulary_words())
  return sorted(words)
