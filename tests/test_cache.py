"""The on-disk cache of a generated split returns exactly the generator's records."""

import functools
import os
import pickle

import numpy as np

from cmjax.data import cache, shapes


def _assert_same(a, b):
  assert a.keys() == b.keys(), a.keys() ^ b.keys()
  for k in a:
    if isinstance(b[k], np.ndarray):
      assert a[k].dtype == b[k].dtype, k
      np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    else:
      assert a[k] == b[k] and type(a[k]) is type(b[k]), (k, a[k], b[k])


def test_cached_records_equal_generated_records(tmp_path):
  factory = functools.partial(
    shapes.ShapesSource, split="train", seed=3, num_examples=24, max_speech_seconds=2.0
  )
  directory = cache.materialize(factory, str(tmp_path / "c"), num_workers=3)
  cached, source = cache.CachedSource(directory), factory()
  assert len(cached) == 24
  for i in (0, 5, 23, -1):
    _assert_same(cached[i], source[i])
  assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]
  # Pickles as its path (grain workers reopen it), and still reads the same.
  blob = pickle.dumps(cached)
  assert len(blob) < 1000
  _assert_same(pickle.loads(blob)[7], source[7])


def test_cache_without_speech_and_key_depends_on_options(tmp_path):
  factory = functools.partial(shapes.ShapesSource, split="test", num_examples=6, speech=False)
  cached = cache.CachedSource(cache.materialize(factory, str(tmp_path / "d"), num_workers=1))
  _assert_same(cached[2], factory()[2])
  assert cache.cache_key("shapes", {"seed": 0}) != cache.cache_key("shapes", {"seed": 1})
