"""Streaming webdataset shards: read in order, shuffled in windows, resumable exactly.

With `config.data.stream=True` the `webdataset` dataset's training split is
not indexed at start: each process reads its share of the shards front to
back (one pass over each shard per epoch, what remote storage is good at).

  epoch e:    the shards in an order drawn from (seed, e); process p of P
              takes every P-th of them, grain worker w of W every W-th of those
  window:     `config.data.shuffle_buffer` consecutive samples, emitted in an
              order drawn from (seed, e, slice, window index)
  position:   (epoch, shard, sample where the window starts, window index,
              samples emitted from it): a few integers in every checkpoint

A resumed run re-reads the current window from its first sample (skipping
earlier samples of that shard without decoding them) and goes on exactly
where it stopped: the same batches, bitwise. The global batch is the
processes' local batches together, so it depends on the process count (each
process reads only its own shards), unlike the indexed reading.
"""

from __future__ import annotations

import logging
import tarfile

import grain
import numpy as np

from cmjax.data.decode import DataError


def stream_samples(path: str):
  """Yields `(key, {extension: bytes})` of a tar's samples, reading it once in order
  (members of one sample are consecutive, as webdataset writes them)."""
  from cmjax.data import webdataset  # pylint: disable=g-import-not-at-top

  key, members = None, {}
  try:
    with webdataset._open(path) as f, tarfile.open(fileobj=f, mode="r|") as tar:  # pylint: disable=protected-access
      for member in tar:
        parts = webdataset.split_member(member)
        if parts is None:
          continue
        stem, ext = parts
        if stem != key and members:
          yield key, members
          members = {}
        key = stem
        data = tar.extractfile(member).read()
        if len(data) != member.size:
          raise DataError(f"shard {path!r} ends inside {member.name} (truncated?)")
        members[ext] = data
  except FileNotFoundError:
    raise DataError(f"shard {path!r} does not exist") from None
  except (tarfile.TarError, EOFError, OSError) as e:
    raise DataError(f"shard {path!r} is not a readable tar (truncated?): {e}") from None
  if members:
    yield key, members


class _Cursor:
  """Samples of a list of shards in order, from (shard index, sample index)."""

  def __init__(self, shards: list[str], shard: int, sample: int):
    self.shards, self.shard, self.sample = shards, shard, sample
    self._samples = None

  def next(self):
    """`(shard path, key, members)`, or None after the last shard."""
    while self.shard < len(self.shards):
      path = self.shards[self.shard]
      if self._samples is None:
        self._samples = stream_samples(path)
        for skipped in range(self.sample):  # back to where a checkpoint stood
          if next(self._samples, None) is None:
            raise DataError(
              f"shard {path!r} has {skipped} samples, but the checkpoint stands at "
              f"sample {self.sample}: the shard changed since the run was saved"
            )
      item = next(self._samples, None)
      if item is not None:
        self.sample += 1
        return (path, *item)
      self._samples, self.shard, self.sample = None, self.shard + 1, 0
    return None


class ShardStream(grain.IterDataset):
  """Training examples streamed from tar shards (see the module docstring).

  `make_row(shard, key, members)` builds the row that `preprocess.random_map`
  turns into a batch row; a `DataError` stops the run, or with `skip` the
  sample is left out, logged and counted in the iterator state.
  """

  def __init__(
    self, shards, make_row, preprocess, *, seed, window, process_index, process_count, skip
  ):
    super().__init__()
    if window < 1:
      raise ValueError(f"config.data.shuffle_buffer={window}; expected at least 1")
    self.shards, self.make_row, self.preprocess = list(shards), make_row, preprocess
    self.seed, self.window, self.skip = int(seed), int(window), skip
    self.slices = [slice(process_index, None, process_count)]
    self._check_enough_shards()

  def _check_enough_shards(self) -> None:
    smallest = len(self.shards)  # the smallest share of any process / worker
    for sl in self.slices:
      smallest //= sl.step or 1
    if smallest < 1:
      raise ValueError(
        f"{len(self.shards)} training shards cannot be split over the processes and "
        "grain workers (config.data.num_workers): each needs at least one shard"
      )

  def set_slice(self, sl: slice, sequential_slice: bool = False) -> None:
    """grain's worker processes: worker w of W reads every W-th of this process's shards."""
    del sequential_slice
    self.slices.append(sl)
    self._check_enough_shards()

  @property
  def slice_id(self) -> tuple[int, ...]:
    return tuple(int(s.start or 0) for s in self.slices)

  def shards_of(self, epoch: int) -> list[str]:
    order = np.random.default_rng([self.seed, epoch]).permutation(len(self.shards))
    take = [self.shards[i] for i in order]
    for sl in self.slices:
      take = take[sl]
    return take

  def __iter__(self):
    return _StreamIterator(self)

  def __str__(self) -> str:
    return f"ShardStream({len(self.shards)} shards, window={self.window}, slices={self.slices})"


class _StreamIterator(grain.DatasetIterator):
  def __init__(self, ds: ShardStream):
    super().__init__()
    self._ds = ds
    self.set_state(dict(epoch=0, shard=0, sample=0, window=0, taken=0, skipped=0))

  def set_state(self, state):
    self._epoch, self._window = int(state["epoch"]), int(state["window"])
    self._start = (int(state["shard"]), int(state["sample"]))
    self._taken, self._skipped = int(state["taken"]), int(state.get("skipped", 0))
    self._cursor = _Cursor(self._ds.shards_of(self._epoch), *self._start)
    self._items = None  # the window is (re-)read when next asked for

  def get_state(self):
    shard, sample = self._start
    return dict(
      epoch=self._epoch,
      shard=shard,
      sample=sample,
      window=self._window,
      taken=self._taken,
      skipped=self._skipped,
    )

  def _fill(self) -> None:
    """Reads the window that starts at the cursor (the next epoch's first one at
    the end of an epoch) and puts it in its shuffled order."""
    for _ in range(2):
      self._start = (self._cursor.shard, self._cursor.sample)
      items = []
      while len(items) < self._ds.window:
        item = self._cursor.next()
        if item is None:
          break
        items.append(item)
      if items:
        rng = np.random.default_rng([self._ds.seed, self._epoch, *self._ds.slice_id, self._window])
        self._items = [items[i] for i in rng.permutation(len(items))]
        return
      self._epoch, self._window, self._taken = self._epoch + 1, 0, 0
      self._cursor = _Cursor(self._ds.shards_of(self._epoch), 0, 0)
    raise DataError(f"the training shards hold no samples: {self._ds.shards[:3]} ...")

  def __next__(self):
    while True:
      if self._items is None:
        self._fill()
      elif self._taken >= len(self._items):
        self._window, self._taken = self._window + 1, 0
        self._fill()
      if self._taken >= len(self._items):
        continue
      position = self._taken
      self._taken += 1
      shard, key, members = self._items[position]
      rng = np.random.default_rng(
        [self._ds.seed, self._epoch, *self._ds.slice_id, self._window, position]
      )
      try:
        return self._ds.preprocess.random_map(self._ds.make_row(shard, key, members), rng)
      except DataError as e:
        if not self._ds.skip:
          raise
        self._skipped += 1
        logging.warning("skipped a bad sample (config.data.on_error='skip'): %s", e)
