"""The procedural shapes dataset: determinism, fields, text semantics, options."""

import hashlib

import numpy as np
import pytest

from cmjax.data import shapes, shapes_text, speech

N = 120  # examples scanned by the semantic tests (no speech: fast)
VOCABULARY_SIZE, VOCABULARY_SHA1 = 78, "a2ad3f477066"  # see test_the_vocabulary_is_unchanged


@pytest.fixture(scope="module")
def quiet():
  return shapes.ShapesSource(split="train", speech=False, num_examples=1000)


@pytest.fixture(scope="module")
def quiet_examples(quiet):
  return [quiet[i] for i in range(N)]


# -- a small parser for the caption grammar, used to check the semantics ----


def _lookup(groups):
  return {w: k for k, words in enumerate(groups) for w in words}


_SHAPE, _COLOR, _SIZE = (
  _lookup(g) for g in (shapes_text.SHAPE_WORDS, shapes_text.COLOR_WORDS, shapes_text.SIZE_WORDS)
)
_REL = {"left": 0, "right": 1, "above": 2, "over": 2, "below": 3, "under": 3, "beneath": 3}


def parse(text):
  """Caption -> (set of (shape, color, size), relation of obj A to B or None, shape order).

  Relies on the grammar: a noun phrase starts at 'a'/'an' and holds its
  size/color/shape words, optionally followed by 'that is X [and Y]'.
  """
  words = text.split()
  objects, mentions, rel_pos = [], [], None
  i = 0
  while i < len(words):
    w = words[i]
    if w in _REL and rel_pos is None:
      rel_pos = (i, _REL[w])
    if w in ("a", "an"):
      attrs = {}
      j = i + 1
      while j < len(words):
        for table, key in ((_SIZE, "size"), (_COLOR, "color"), (_SHAPE, "shape")):
          if words[j] in table:
            attrs[key] = table[words[j]]
        if "shape" in attrs:
          break
        j += 1
      k = j + 1
      if words[k : k + 2] == ["that", "is"]:
        for t in (k + 2, k + 4):
          if t < len(words) and (t == k + 2 or words[t - 1] == "and"):
            w2 = words[t]
            if w2 in _SIZE:
              attrs["size"] = _SIZE[w2]
            elif w2 in _COLOR:
              attrs["color"] = _COLOR[w2]
        k = (
          k + 3
          if words[k + 3 : k + 4] != ["and"] or words[k + 4] not in (*_SIZE, *_COLOR)
          else k + 5
        )
      objects.append((attrs["shape"], attrs["color"], attrs["size"]))
      mentions.append(i)
      i = k
      continue
    i += 1
  relation = None
  if rel_pos is not None and len(objects) >= 2:
    pos, rel = rel_pos
    first, second = objects[0][0], objects[1][0]
    if mentions[0] < pos < mentions[1]:
      relation = (first, rel, second)  # "<first> rel <second>"
    else:
      relation = (second, rel, first)  # phrase before both / "its"
  return set(objects), relation


def truth(ex):
  n = int(ex["num_objects"])
  objs = {tuple(int(v) for v in o[:3]) for o in ex["objects"][:n]}
  rel = None
  if n > 1:
    rel = (int(ex["objects"][0, 0]), int(ex["relation_label"]), int(ex["objects"][1, 0]))
  return objs, rel


def same_relation(a, b):
  """Relations equal up to swapping the objects with the inverse relation."""
  if a is None or b is None:
    return a is b
  inv = {0: 1, 1: 0, 2: 3, 3: 2}  # written out: must not share a bug with the grammar
  return a == b or (a[2], inv[a[1]], a[0]) == b


# -- tests ------------------------------------------------------------------


def test_fields_shapes_and_dtypes():
  src = shapes.ShapesSource(split="test", num_examples=10, image_size=48)
  ex = src[3]
  assert ex["image"].dtype == np.uint8 and ex["image"].shape == (48, 48, 3)
  assert ex["speech"].dtype == np.float32 and ex["speech"].ndim == 1
  assert ex["objects"].dtype == np.int32 and ex["objects"].shape == (3, 5)
  for k in (
    "label",
    "shape_label",
    "color_label",
    "size_label",
    "num_objects",
    "relation_label",
    "domain",
    "answer_label",
    "question_type",
    "voice",
    "speech_caption_index",
    "index",
    "speech_rate",
  ):
    assert ex[k].dtype == np.int32 and ex[k].shape == (), k
  assert isinstance(ex["captions"], list) and len(ex["captions"]) == 5
  assert len(set(ex["captions"])) == 5
  for text in ex["captions"] + [ex["negative_caption"], ex["question"], ex["answer"]]:
    assert isinstance(text, str) and text == text.lower() and text == " ".join(text.split())
  assert ex["label"] == ex["shape_label"] == ex["objects"][0, 0]
  assert len(src) == 10
  with pytest.raises(IndexError):
    src[10]


def test_deterministic_and_index_seed_sensitive():
  a = shapes.ShapesSource(split="train", seed=3, num_examples=20)
  b = shapes.ShapesSource(split="train", seed=3, num_examples=20)
  x, y = a[7], b[7]
  for k in x:
    assert np.array_equal(np.asarray(x[k]), np.asarray(y[k])), k
  assert not np.array_equal(a[8]["image"], x["image"])
  other_seed = shapes.ShapesSource(split="train", seed=4, num_examples=20)[7]
  assert not np.array_equal(other_seed["image"], x["image"])
  other_split = shapes.ShapesSource(split="validation", seed=3, num_examples=20)[7]
  assert not np.array_equal(other_split["image"], x["image"])


def test_speech_flag_does_not_change_other_fields():
  on = shapes.ShapesSource(split="train", num_examples=5)[2]
  off = shapes.ShapesSource(split="train", num_examples=5, speech=False)[2]
  assert np.array_equal(on["image"], off["image"])
  assert on["captions"] == off["captions"] and on["question"] == off["question"]
  assert off["speech"].size == 0 and off["voice"] == -1


def test_captions_describe_the_objects_and_relation(quiet_examples):
  for ex in quiet_examples:
    objs, rel = truth(ex)
    for c in ex["captions"]:
      got_objs, got_rel = parse(c)
      assert got_objs == objs, (c, objs)
      assert same_relation(got_rel, rel), (c, rel)


def test_negative_caption_contradicts_the_scene(quiet_examples):
  kinds_seen = set()
  for ex in quiet_examples:
    neg = ex["negative_caption"]
    assert neg not in ex["captions"]
    objs, rel = truth(ex)
    got_objs, got_rel = parse(neg)
    wrong_objects = got_objs != objs
    wrong_relation = not same_relation(got_rel, rel)
    assert wrong_objects or wrong_relation, (neg, objs, rel)
    if wrong_objects:
      # One attribute of one object changed: same count, one object differs.
      assert len(got_objs) == len(objs) and len(got_objs - objs) == 1, (neg, objs)
    kinds_seen.add("object" if wrong_objects else "relation")
  assert kinds_seen == {"relation", "object"}


def test_relation_matches_positions(quiet_examples):
  seen = set()
  for ex in quiet_examples:
    if ex["num_objects"] < 2:
      assert ex["relation_label"] == -1
      continue
    (x0, y0), (x1, y1) = ex["objects"][0, 3:], ex["objects"][1, 3:]
    dx, dy = int(x0) - int(x1), int(y0) - int(y1)
    r = int(ex["relation_label"])
    seen.add(r)
    # left/right: horizontal offset dominates with the right sign; etc.
    expected = {
      0: dx < 0 and abs(dx) > abs(dy),
      1: dx > 0 and abs(dx) > abs(dy),
      2: dy < 0 and abs(dy) > abs(dx),
      3: dy > 0 and abs(dy) > abs(dx),
    }[r]
    assert expected, (r, dx, dy)
  assert seen == {0, 1, 2, 3}


def test_objects_are_drawn_where_recorded(quiet_examples):
  for ex in quiet_examples[:30]:
    img = ex["image"].astype(int)
    for shape, color, size, x, y in ex["objects"][: int(ex["num_objects"])]:
      r = int(shapes.shapes_render.object_radius(int(size), 64))
      patch = img[max(y - r, 0) : y + r + 1, max(x - r, 0) : x + r + 1]
      close = np.abs(patch - shapes.shapes_render.PALETTE[color]).sum(-1) < 30
      # The ring has a hole and the star thin arms, but all cover > 5 px.
      assert close.sum() > 5, (shapes.SHAPES[shape], shapes.COLORS[color])


def _answer(question, objs):
  """The answer to `question` about objs = [(shape, color, size, x, y)], worked
  out here from the scene's geometry; None if the question is ambiguous."""
  by_shape = {shapes.SHAPES[o[0]]: o for o in objs}
  words = question.split()
  if question == "how many objects are there":
    return ("one", "two", "three")[len(objs) - 1]
  # The reference object follows the last "the".
  the = len(words) - 1 - words[::-1].index("the") if "the" in words else 0
  if question.startswith("what color is the object "):
    target = _related(words[5:the], words[the + 1 :], by_shape, objs)
    return None if target is None else shapes.COLORS[target[1]]
  if question.startswith("what color is the "):
    return shapes.COLORS[by_shape[words[-1]][1]]
  if question.startswith("what size is the "):
    return shapes.SIZES[by_shape[words[-1]][2]]
  if question.startswith("what shape is the "):
    found = [o for o in objs if shapes.COLORS[o[1]] == words[-2]]
    return shapes.SHAPES[found[0][0]] if len(found) == 1 else None
  if question.startswith("what is "):
    target = _related(words[2:the], words[the + 1 :], by_shape, objs)
    return None if target is None else shapes.SHAPES[target[0]]
  if question.startswith("is there "):
    o = by_shape.get(words[-1])
    if len(words) == 4:
      return "yes" if o is not None else "no"
    return "yes" if o is not None and shapes.COLORS[o[1]] == words[-2] else "no"
  if words[2] in ("color", "size"):  # is the color|size of the A the color|size of the B
    a, b = by_shape[words[5]], by_shape[words[-1]]
    k = 1 if words[2] == "color" else 2
    return "yes" if a[k] == b[k] else "no"
  # is the A <relation> the B: the dominant direction from B to A
  a, b = by_shape[words[2]], by_shape[words[-1]]
  dx, dy = a[3] - b[3], a[4] - b[4]
  horizontal = abs(dx) > abs(dy)
  rel = " ".join(words[3:-2])
  truth = {
    "left of": horizontal and dx < 0,
    "right of": horizontal and dx > 0,
    "above": not horizontal and dy < 0,
    "below": not horizontal and dy > 0,
  }[rel]
  return "yes" if truth else "no"


def _related(rel_words, ref_words, by_shape, objs):
  """The one object in relation `rel_words` to the reference ('[color] shape')."""
  ref = by_shape[ref_words[-1]]
  if len(ref_words) == 2 and shapes.COLORS[ref[1]] != ref_words[0]:
    return None
  rel = " ".join(rel_words)
  found = []
  for o in objs:
    if o is ref:
      continue
    dx, dy = o[3] - ref[3], o[4] - ref[4]
    if {"left of": dx < 0, "right of": dx > 0, "above": dy < 0, "below": dy > 0}[rel]:
      found.append(o)
  return found[0] if len(found) == 1 else None


def test_questions_are_answered_correctly_and_typed():
  src = shapes.ShapesSource(split="train", speech=False, num_examples=1000)
  types = {t: [] for t in shapes.QUESTION_TYPES}
  for i in range(400):
    ex = src[i]
    q, a = ex["question"], ex["answer"]
    assert shapes.ANSWERS[int(ex["answer_label"])] == a
    objs = [tuple(int(v) for v in o) for o in ex["objects"][: int(ex["num_objects"])]]
    assert _answer(q, objs) == a, (q, a, objs)
    types[shapes.QUESTION_TYPES[int(ex["question_type"])]].append((q, a))
  starts = {
    "attribute": ("what color is the", "what size is the", "what shape is the"),
    "existence": ("is there",),
    "count": ("how many",),
    "relation": ("what is", "what color is the object", "is the"),
    "compare": ("is the",),
  }
  for t, pairs in types.items():
    assert len(pairs) >= 25, (t, len(pairs))
    assert all(q.startswith(starts[t]) for q, _ in pairs), t
  # Yes/no answers are balanced within each type that has them, counts too.
  yes_no = {t: [a for _, a in pairs if a in ("yes", "no")] for t, pairs in types.items()}
  for t in ("existence", "compare"):  # relation: too few here, see the next test
    yes = np.mean([a == "yes" for a in yes_no[t]])
    assert 0.3 < yes < 0.7, (t, yes)
  counts = np.bincount([("one", "two", "three").index(a) for _, a in types["count"]], minlength=3)
  assert counts.min() > 0.2 * counts.sum(), counts


def test_colour_comparisons_are_answered_yes_half_the_time():
  # Two random colours agree 1 time in 8; the generator keeps a "no" 1 time in 7.
  rng = np.random.default_rng(0)
  answers = []
  while len(answers) < 4000:
    objects = [(s, int(rng.integers(8)), int(rng.integers(2))) for s in (0, 1)]
    qa = shapes_text._compare_question(objects, rng)
    if qa is not None and qa[0].startswith("is the color"):
      answers.append(qa[1] == "yes")
  assert 0.46 < np.mean(answers) < 0.54, np.mean(answers)


def test_relation_yes_no_questions_are_answered_yes_half_the_time():
  # Whichever object the question names first (the inverse relation then holds).
  rng = np.random.default_rng(1)
  answers = []
  while len(answers) < 4000:
    relation = int(rng.integers(4))
    q, a = shapes_text._question_of_kind(3, [(0, 1, 0), (1, 2, 1)], relation, None, rng)
    if a in ("yes", "no"):
      answers.append(a == "yes")
  assert 0.46 < np.mean(answers) < 0.54, np.mean(answers)


def test_swap_captions_are_true_and_false_with_the_same_words():
  src = shapes.ShapesSource(split="test", speech=False, num_examples=200)
  seen = set()
  for i in range(60):
    ex = src[i]
    true_caption, *negatives = ex["swap_captions"]
    if int(ex["num_objects"]) == 1:
      assert ex["swap_captions"] == ["", "", "", ""] and ex["pair_caption"] == ""
      continue
    objs, rel = truth(ex)
    got_objs, got_rel = parse(true_caption)
    assert got_objs == objs and same_relation(got_rel, rel), true_caption
    a, b = ex["objects"][0], ex["objects"][1]
    assert ex["pair_caption"] == (
      f"the {shapes.COLORS[a[1]]} {shapes.SHAPES[a[0]]} and the {shapes.COLORS[b[1]]} "
      f"{shapes.SHAPES[b[0]]}"
    )
    for kind, neg in zip(shapes_text.SWAP_TYPES, negatives):
      if not neg:
        assert kind == "attribute"
        a, b = ex["objects"][0], ex["objects"][1]
        assert a[1] == b[1] and a[2] == b[2]
        continue
      seen.add(kind)
      n_objs, n_rel = parse(neg)
      assert not (n_objs == objs and same_relation(n_rel, rel)), (kind, neg)
      if kind in ("attribute", "order"):  # the same words, differently bound or ordered
        assert sorted(neg.split()) == sorted(true_caption.split()) and neg != true_caption
      else:
        assert len(neg.split()) == len(true_caption.split())
  assert seen == set(shapes_text.SWAP_TYPES)


def test_spoken_questions():
  kw = dict(split="test", num_examples=5, max_speech_seconds=4.0)
  asked = shapes.ShapesSource(spoken="question", **kw)[2]
  told = shapes.ShapesSource(**kw)[2]
  assert asked["question"] == told["question"] and asked["captions"] == told["captions"]
  assert asked["speech_caption_index"] == -1 and asked["speech"].size > 1000
  assert not np.array_equal(asked["speech"][:1000], told["speech"][:1000])
  with pytest.raises(ValueError, match="spoken"):
    shapes.ShapesSource(spoken="answer", **kw)


def test_the_vocabulary_is_unchanged():
  # Adding a word renumbers the word ids, which acts like a new initialisation
  # seed: every recorded result would change. Word new text with existing words.
  words = shapes.vocabulary()
  assert (
    len(words) == VOCABULARY_SIZE
    and hashlib.sha1(" ".join(words).encode()).hexdigest()[:12] == VOCABULARY_SHA1
  ), (len(words), hashlib.sha1(" ".join(words).encode()).hexdigest()[:12])


def test_vocabulary_covers_all_text_and_canonical_words_are_common(quiet_examples):
  vocab = set(shapes.vocabulary())
  counts = {}
  for ex in quiet_examples:
    for text in (
      ex["captions"]
      + [ex["negative_caption"], ex["question"], ex["answer"]]
      + ex["swap_captions"]
      + [ex["pair_caption"]]
    ):
      for w in text.split():
        assert w in vocab, w
        counts[w] = counts.get(w, 0) + 1
  for w in shapes.SHAPES + shapes.COLORS + shapes.SIZES:
    assert counts.get(w, 0) >= 20, (w, counts.get(w, 0))


def test_class_skew_makes_train_long_tailed():
  skewed = shapes.ShapesSource(split="train", speech=False, class_skew=1.5)
  flat = shapes.ShapesSource(split="validation", speech=False, class_skew=1.5)
  n = 400
  c_skew = np.bincount([int(skewed[i]["label"]) for i in range(n)], minlength=8)
  c_flat = np.bincount([int(flat[i]["label"]) for i in range(n)], minlength=8)
  assert c_skew[0] > 4 * max(c_skew[7], 1)  # expected ratio 8**1.5 ~ 23
  assert c_flat.max() < 3 * max(c_flat.min(), 1)  # other splits stay balanced


def test_domain_1_has_textured_background():
  stats = {}
  for d in (0, 1):
    src = shapes.ShapesSource(split="train", speech=False, domain=d)
    corners = np.stack([src[i]["image"][:6, :6].reshape(-1, 3) for i in range(20)])
    stats[d] = corners.astype(float).std(axis=1).mean()
    assert src[0]["domain"] == d
  assert stats[0] < 1.0 < 5.0 < stats[1]


def test_speech_fields_and_holdout_voices():
  lengths = []
  for split, pool in (("train", speech.TRAIN_VOICES), ("test", speech.TEST_VOICES)):
    src = shapes.ShapesSource(split=split, num_examples=100)
    for i in range(6):
      ex = src[i]
      assert speech.ALL_VOICES[int(ex["voice"])] in pool
      wav = ex["speech"]
      assert 0.3 * 16000 < wav.size <= 4.0 * 16000
      assert np.sqrt(np.mean(wav**2)) > 0.01 and np.abs(wav).max() <= 1.0
      k = int(ex["speech_caption_index"])
      assert 0 <= k < 5
      lengths.append(wav.size)
  assert len(set(lengths)) > 1
  all_src = shapes.ShapesSource(split="test", holdout_voices=False)
  assert set(all_src.voice_ids) == set(range(len(speech.ALL_VOICES)))


@pytest.mark.parametrize(
  "option,value",
  [
    ("split", "dev"),
    ("seed", -1),
    ("num_examples", 0),
    ("image_size", 8),
    ("min_objects", 0),
    ("max_objects", 4),
    ("domain", 2),
    ("class_skew", -1.0),
    ("num_captions", 0),
    ("sample_rate", 10),
    ("max_speech_seconds", 0.0),
    ("noise_snr_db", (30, 10)),
    ("speech_rates", (50, 60)),
  ],
)
def test_bad_options_raise_naming_the_option(option, value):
  with pytest.raises(ValueError, match=option):
    shapes.ShapesSource(**{option: value})


def test_object_count_options():
  src = shapes.ShapesSource(split="train", speech=False, min_objects=2, max_objects=2)
  assert {int(src[i]["num_objects"]) for i in range(20)} == {2}
  assert src[0]["objects"].shape == (2, 5)


def test_grain_pipeline_reads_the_source():
  grain = pytest.importorskip("grain")
  src = shapes.ShapesSource(split="validation", speech=False, num_examples=8)
  ds = grain.MapDataset.source(src).map(lambda ex: ex["image"])
  assert np.array_equal(ds[5], src[5]["image"])


def test_tfds_round_trip_matches_source(tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  from cmjax.data import shapes_tfds

  opts = dict(num_examples=4, seed=5, max_speech_seconds=3.0)
  builder = shapes_tfds.prepare_shapes_tfds(str(tmp_path), **opts)
  by_builder = builder.as_data_source()
  by_name = tfds.data_source(f"shapes/{builder.builder_config.name}", data_dir=str(tmp_path))
  for split in shapes.SPLITS:
    src = shapes.ShapesSource(split=split, **opts)
    assert len(by_builder[split]) == len(by_name[split]) == 4
    for i in range(4):
      rec, ref = by_name[split][i], src[i]
      assert int(rec["index"]) == i
      assert np.array_equal(rec["image"], ref["image"])
      assert np.array_equal(rec["speech"], ref["speech"])
      assert np.array_equal(rec["objects"], ref["objects"])
      assert [c.decode() for c in rec["captions"]] == ref["captions"]
      assert rec["negative_caption"].decode() == ref["negative_caption"]
      for k in ("label", "color_label", "relation_label", "voice", "answer_label"):
        assert int(rec[k]) == int(ref[k]), k
  with pytest.raises(ValueError, match="split"):
    shapes_tfds.prepare_shapes_tfds(str(tmp_path), split="train")
