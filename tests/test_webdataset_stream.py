"""Streamed webdataset shards (`config.data.stream`): every sample once per epoch,
shuffled in windows, shards split over processes and workers, and a position
that resumes the same stream exactly."""

import io
import json
import os
import tarfile

import numpy as np
import pytest

from cmjax.data import datasets, pipeline, webdataset_stream
from cmjax.data.decode import DataError
from tests import helpers


def _png(value: int) -> bytes:
  from PIL import Image

  buf = io.BytesIO()
  Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(buf, "PNG")
  return buf.getvalue()


def _write_shards(folder, num_shards=3, per_shard=7, bad=None, nan_score=None):
  """Shards `s-000.tar`...: sample i is a PNG of value i and the caption 'sample i'
  (with `nan_score`, also a json `score`: i, or NaN for sample `nan_score`)."""
  paths = []
  for s in range(num_shards):
    path = os.path.join(folder, f"s-{s:03d}.tar")
    with tarfile.open(path, "w") as tar:
      for j in range(per_shard):
        i = s * per_shard + j
        image = b"not a png" if i == bad else _png(i)
        members = [(f"{i:05d}.png", image), (f"{i:05d}.txt", f"sample {i}".encode())]
        if nan_score is not None:
          score = json.dumps({"score": float("nan") if i == nan_score else i})
          members.append((f"{i:05d}.json", score.encode()))
        for name, data in members:
          info = tarfile.TarInfo(name)
          info.size = len(data)
          tar.addfile(info, io.BytesIO(data))
    paths.append(path)
  return paths


class _Keep:
  """Preprocessing that keeps the key and one random draw (to check the seeding)."""

  def random_map(self, row, rng):
    return dict(key=row["key"], draw=rng.integers(1 << 30))


def _stream(shards, window=5, process=(0, 1), **kw):
  return webdataset_stream.ShardStream(
    shards,
    lambda shard, key, members: dict(key=key, shard=shard),
    _Keep(),
    seed=0,
    window=window,
    process_index=process[0],
    process_count=process[1],
    skip=False,
    **kw,
  )


def _keys(it, n):
  return [next(it)["key"] for _ in range(n)]


def test_each_epoch_reads_every_sample_once_shuffled(tmp_path):
  shards = _write_shards(tmp_path)
  it = iter(_stream(shards))
  first, second = _keys(it, 21), _keys(it, 21)
  everything = sorted(f"{i:05d}" for i in range(21))
  assert sorted(first) == everything and sorted(second) == everything
  assert first != everything and first != second  # shuffled, differently each epoch
  next(it)  # the next epoch starts when its first sample is asked for
  assert it.get_state()["epoch"] == 2


def test_processes_and_workers_read_disjoint_shards(tmp_path):
  shards = _write_shards(tmp_path, num_shards=4, per_shard=3)
  parts = []
  for p in (0, 1):
    for w in (0, 1):
      ds = _stream(shards, process=(p, 2))
      ds.set_slice(slice(w, None, 2))  # what a grain worker process does
      parts.append(set(_keys(iter(ds), 3)))
  assert all(len(part) == 3 for part in parts)
  assert set().union(*parts) == {f"{i:05d}" for i in range(12)}
  with pytest.raises(ValueError, match="4 training shards cannot be split"):
    _stream(shards, process=(0, 8))


@pytest.mark.parametrize("stop", [0, 3, 5, 12, 21, 23])
def test_position_resumes_the_same_stream(tmp_path, stop):
  """Mid-window, at a window's end, at and after an epoch's end."""
  shards = _write_shards(tmp_path)
  it = iter(_stream(shards))
  for _ in range(stop):
    next(it)
  state = it.get_state()
  want = [next(it) for _ in range(10)]
  again = iter(_stream(shards))
  again.set_state(state)
  assert [next(again) for _ in range(10)] == want


def test_a_shard_that_changed_since_the_checkpoint_is_named(tmp_path):
  shards = _write_shards(tmp_path)
  it = iter(_stream(shards))
  state = dict(it.get_state(), shard=0, sample=99)
  it.set_state(state)
  with pytest.raises(DataError, match="has 7 samples, but the checkpoint stands at sample 99"):
    next(it)


def test_truncated_shard_is_named(tmp_path):
  shards = _write_shards(tmp_path, num_shards=1, per_shard=5)
  with open(shards[0], "r+b") as f:
    f.truncate(4700)  # inside the third sample's image
  it = iter(_stream(shards, window=100))
  with pytest.raises(DataError, match=r"s-000.tar.*truncated"):
    next(it)


def _data_config(tmp_path, shards, **overrides):
  c = helpers.load_config("webdataset_contrastive.py", "tiny")
  pattern = os.path.join(os.path.dirname(shards[0]), f"s-{{000..{len(shards) - 1:03d}}}.tar")
  c.data.update(shards=pattern, eval_shards=shards[-1], stream=True, shuffle_buffer=4, image_size=8)
  c.data.update(overrides)
  c.batch_size = 4
  return c


def test_bad_sample_stops_the_run_or_is_skipped_and_counted(tmp_path):
  shards = _write_shards(tmp_path, bad=16)
  c = _data_config(tmp_path, shards)
  # The first 7 samples (peek_rows) are good; sample 16 is found while streaming.
  c.data.peek_rows = 7
  with pytest.raises(DataError, match=r"s-002.tar:00016: cannot decode image"):
    it = iter(pipeline.train_dataset(c, datasets.build(c.data)))
    for _ in range(6):
      next(it)
  c.data.on_error = "skip"
  c.data.eval_shards = shards[0]
  it = iter(pipeline.train_dataset(c, datasets.build(c.data)))
  for _ in range(5):  # the 20 good rows of the first epoch
    next(it)
  assert it.get_state()["skipped"] == 1


def test_a_nan_target_stops_the_stream_or_is_skipped_and_counted(tmp_path):
  shards = _write_shards(tmp_path, nan_score=16)
  c = _data_config(tmp_path, shards, peek_rows=7, eval_shards=shards[0])
  c.data.labels = dict(score=dict(type="regression"))
  with pytest.raises(
    DataError, match=r"split 'train', an example \(s-002.tar:00016\): 'score' holds nan"
  ):
    it = iter(pipeline.train_dataset(c, datasets.build(c.data)))
    for _ in range(6):
      next(it)
  c.data.on_error = "skip"
  it = iter(pipeline.train_dataset(c, datasets.build(c.data)))
  for _ in range(5):  # the 20 good rows of the first epoch
    next(it)
  assert it.get_state()["skipped"] == 1


def test_streamed_training_size_is_num_train(tmp_path):
  shards = _write_shards(tmp_path)
  c = _data_config(tmp_path, shards, num_train=None)
  ds = datasets.build(c.data)
  with pytest.raises(ValueError, match="set config.data.num_train"):
    len(ds.source("train", seed=0))
  c.data.num_train = 21
  assert len(datasets.build(c.data).source("train", seed=0)) == 21


def test_grain_workers_split_the_shards_and_resume(tmp_path):
  from absl import flags

  if not flags.FLAGS.is_parsed():  # grain's worker processes read absl flags
    flags.FLAGS.mark_as_parsed()
  shards = _write_shards(tmp_path, num_shards=4, per_shard=4)
  c = _data_config(tmp_path, shards, num_workers=2)
  ds = datasets.build(c.data)
  it = iter(pipeline.train_dataset(c, ds))
  first = [next(it) for _ in range(3)]
  state = it.get_state()
  want = [next(it) for _ in range(3)]
  # Batches alternate between the workers, each reading its own two shards
  # (image i is in shard i // 4) in the first epoch: two batches each.
  shards_read = [{int(v) // 4 for v in b["image"][:, 0, 0, 0]} for b in (first + want)[:4]]
  worker0, worker1 = set().union(*shards_read[0::2]), set().union(*shards_read[1::2])
  assert len(worker0) == len(worker1) == 2 and not worker0 & worker1
  again = iter(pipeline.train_dataset(c, ds))
  again.set_state(state)
  for a in want:
    b = next(again)
    for key in a:
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)
