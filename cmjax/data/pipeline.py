"""grain input pipelines: source -> shuffle -> repeat -> preprocess -> batch.

The training pipeline is a `grain.MapDataset` chain, so its iterator state (a few
integers) is saved with every checkpoint and a resumed run sees exactly the
batches an uninterrupted run would have seen. Each host reads only its own rows
of every global batch (see `train_dataset`).
"""

from __future__ import annotations

import grain
import numpy as np

from cmjax.data import balance, datasets, guard


def train_dataset(
  config, dataset=None, *, process_index: int = 0, process_count: int = 1, source=None
) -> grain.IterDataset:
  """Infinite, shuffled, batched per-host training stream (`config.batch_size` global).

  Process `process_index` of `process_count` yields rows
  `[process_index * b, (process_index + 1) * b)` of each global batch (`b` the
  local batch), so the global batches do not depend on the process count.
  """
  data = config.data
  if dataset is None:
    dataset = datasets.build(data)
  if config.batch_size % process_count:
    raise ValueError(
      f"batch_size={config.batch_size} is not divisible by the {process_count} processes."
    )
  local_batch = config.batch_size // process_count
  stream = dataset.train_stream(config, process_index=process_index, process_count=process_count)
  if stream is not None:  # each process reads its own part of the stream
    it = stream.batch(local_batch, drop_remainder=True)
    if data.get("num_workers", 0) > 0:
      return it.mp_prefetch(
        grain.MultiprocessingOptions(num_workers=data.num_workers, per_worker_buffer_size=2)
      )
    return grain.experimental.ThreadPrefetchIterDataset(it, prefetch_buffer_size=4)
  if source is None:
    source = dataset.source("train", seed=config.seed)
  resample = data.get("resample")
  if resample:
    if resample != "balanced":
      raise ValueError(f"config.data.resample={resample!r}; expected 'balanced' or None.")
    key = data.get("resample_key", "label")
    source = balance.ResampledSource(source, balance.labels_of(source, key), config.seed)
  # Shuffle, augment and batch the whole stream the same way in every process,
  # then process p keeps local batches p, p + count, ...: global batch t is the
  # same examples (with the same augmentation) whatever the number of processes,
  # and each process reads and preprocesses only its own rows.
  ds = grain.MapDataset.source(source).map_with_index(guard.with_index)
  ds = ds.seed(config.seed).shuffle().repeat(None)
  ds = ds.random_map(dataset.checked_preprocess(train=True, split="train"))
  ds = ds.batch(local_batch, drop_remainder=True)[process_index::process_count]
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=4))
  if data.get("num_workers", 0) > 0:
    it = it.mp_prefetch(
      grain.MultiprocessingOptions(num_workers=data.num_workers, per_worker_buffer_size=2)
    )
  return it


def batch_examples(config, source, step: int) -> list[int]:
  """Indices into the training `source` of the examples of global batch `step`
  (0-based) of `train_dataset`: the same seeded shuffle over the same length."""
  order = grain.MapDataset.range(len(source)).seed(config.seed).shuffle().repeat(None)
  b = config.batch_size
  return [int(order[step * b + j]) for j in range(b)]


def describe_batch(config, dataset, step: int, *, source=None, most: int = 8) -> str:
  """The examples of global training batch `step`, for error messages: their
  indices, and their rows (manifest lines, shard keys) where the data names them."""
  if dataset.train_stream(config, process_index=0, process_count=1) is not None:
    return f"batch {step} of a streamed split (its position is in the checkpoints)"
  if config.data.get("resample"):
    return f"batch {step} (resampled: indices not reconstructed)"
  source = source if source is not None else dataset.source("train", seed=config.seed)
  indices = batch_examples(config, source, step)
  more = f" and {len(indices) - most} more" if len(indices) > most else ""
  text = f"examples {indices[:most]}{more} of the 'train' split"
  rows = [source[i].get("_row") if hasattr(source[i], "get") else None for i in indices[:most]]
  if all(rows):  # files and shards name their rows
    text += f" ({', '.join(map(str, rows))}{more})"
  return text


def materialize(source, preprocess_fn, batch_size: int = 64) -> dict[str, np.ndarray]:
  """Applies `preprocess_fn(record) -> dict` to every example; stacks into arrays.

  Used for held-out evaluation sets, which are small and read once.
  """
  ds = grain.MapDataset.source(source).map(preprocess_fn).batch(batch_size)
  parts = list(ds.to_iter_dataset(grain.ReadOptions(num_threads=1)))
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
