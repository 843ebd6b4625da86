"""Checks of every example's values on its way into a batch.

A batch of the right shapes and dtypes can still ruin a run: a NaN in a float
waveform or regression target, or a token id past the vocabulary (an embedding
lookup past its table returns NaN rows), turns every parameter into NaN in one
step. `Guarded` wraps a dataset's preprocessing and checks each row it makes
against the dataset's `ElementSpec`:

  every key       present, with the spec's shape and dtype
  text            token ids in [0, vocab_size)
  class labels    in [0, classes)
  multi-labels    finite, in [0, 1]
  regressions     finite
  audio           finite, |sample| <= config.data.max_abs_sample (2.0: waveforms
                  are in [-1, 1]; the headroom is for resampling overshoot)
  other floats    finite (a float image or video, float extras)

Integer pixels are in range by their dtype (uint8). A bad row raises a
`DataError` naming the dataset, the split and the example (its index, and the
file or shard row where the data names one). The checks are a few vectorised
reductions per row, in the input workers, off the training thread.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping

import grain
import numpy as np

from cmjax.data.decode import DataError

DEFAULT_MAX_ABS_SAMPLE = 2.0


@dataclasses.dataclass(frozen=True)
class Rule:
  """What one batch key's values must be (bounds inclusive; None: unbounded)."""

  key: str
  low: float | None = None
  high: float | None = None
  finite: bool = False
  what: str = "value"  # for messages: 'token id', 'class', 'sample', ...


def rules(spec, data_config: Mapping) -> tuple[Rule, ...]:
  """The value rules of a dataset's `ElementSpec` (see the module docstring)."""
  out = []
  max_abs = float(data_config.get("max_abs_sample", DEFAULT_MAX_ABS_SAMPLE))
  for key, feature in spec.features.items():
    dtype = np.dtype(feature.dtype)
    floating = np.issubdtype(dtype, np.floating)
    if key == "text" and spec.vocab_size:
      out.append(Rule(key, 0, spec.vocab_size - 1, what="token id"))
    elif key in spec.labels:
      out.append(Rule(key, 0, spec.labels[key] - 1, what="class"))
    elif key in spec.multilabels:
      out.append(Rule(key, 0.0, 1.0, finite=True, what="multi-label value"))
    elif key == "audio":
      out.append(Rule(key, -max_abs, max_abs, finite=True, what="sample"))
    elif floating:
      out.append(Rule(key, finite=True))
  return tuple(out)


def problems(row: Mapping, features: Mapping, value_rules: tuple[Rule, ...]) -> list[str]:
  """What is wrong with one preprocessed example (no batch axis); [] if nothing.

  Args:
    row: batch key -> array of one example.
    features: the spec's `features` (key -> `Feature` with shape and dtype).
    value_rules: `rules(spec, config.data)`.
  """
  return Checker(features, value_rules)(row)


class Checker:
  """`problems` with the spec's shapes and dtypes looked up once: a row's checks
  cost a few microseconds plus two reductions over each large float array (the
  row is still in the cache, just made)."""

  def __init__(self, features: Mapping, value_rules: tuple[Rule, ...]):
    self.layout = [(k, tuple(f.shape), np.dtype(f.dtype)) for k, f in features.items()]
    self.rules = [(r, r.low, r.high) for r in value_rules]

  def __call__(self, row: Mapping) -> list[str]:
    for key, shape, dtype in self.layout:
      value = row.get(key)
      if value is None or getattr(value, "shape", None) != shape or value.dtype != dtype:
        return self._layout_problems(row)
    found = []
    for rule, low_bound, high_bound in self.rules:
      value = row[rule.key]
      if not value.ndim:  # a scalar: Python comparisons are cheaper than reductions
        low = high = value.item()
      elif value.size:
        # Two reductions: a NaN or an infinity shows in the minimum or the maximum.
        low, high = value.min().item(), value.max().item()
      else:
        continue
      if rule.finite and not (math.isfinite(low) and math.isfinite(high)):
        at = np.argwhere(~np.isfinite(value))[0]
        found.append(
          f"{rule.key!r} holds {value[tuple(at)]} at {tuple(int(i) for i in at)} (not finite)"
        )
      elif (low_bound is not None and low < low_bound) or (
        high_bound is not None and high > high_bound
      ):
        bad = low if low_bound is not None and low < low_bound else high
        found.append(
          f"{rule.key!r} holds {rule.what} {bad!r}, outside [{low_bound}, {high_bound}]"
          + _hint(rule)
        )
    return found

  def _layout_problems(self, row: Mapping) -> list[str]:
    found = []
    for key, shape, dtype in self.layout:
      value = row.get(key)
      if value is None:
        found.append(f"key {key!r} is missing (it has {sorted(row)})")
      elif np.shape(value) != shape:
        found.append(f"{key!r} has shape {np.shape(value)}, expected {shape}")
      elif np.result_type(value) != dtype:
        found.append(f"{key!r} has dtype {np.result_type(value)}, expected {dtype}")
    return found


def _hint(rule: Rule) -> str:
  if rule.what == "token id":
    return " (the tokenizer's ids do not fit the vocabulary: set config.data.vocab_size?)"
  if rule.what == "sample":
    return " (waveforms are floats in [-1, 1]; raise config.data.max_abs_sample if intended)"
  return ""


def describe(record, index: int | None) -> str:
  """'example 17 (train.jsonl:18)': the index in the source (else the record's
  own `index`), and the file or shard row where the data names one."""
  get = getattr(record, "get", None)
  if index is None and get is not None:
    index = get("index")
  named = get("_row") if get is not None else None
  text = f"example {index}" if index is not None else "an example"
  return f"{text} ({named})" if named is not None else text


class Guarded(grain.transforms.RandomMap):
  """A dataset's preprocessing, each row checked (see the module docstring).

  Takes a record, or `(index, record)` from `with_index` (so that a bad row
  names its index in the source).
  """

  def __init__(self, preprocess, spec, data_config: Mapping, split: str):
    self.preprocess = preprocess
    self.check = Checker(spec.features, rules(spec, data_config))
    self.where = f"dataset {spec.dataset!r}, split {split!r}"

  def random_map(self, element, rng: np.random.Generator):
    index, record = element if isinstance(element, tuple) else (None, element)
    row = self.preprocess.random_map(record, rng)
    found = self.check(row)
    if found:
      raise DataError(f"{self.where}, {describe(record, index)}: {'; '.join(found)}")
    return row


def with_index(index: int, record):
  """For `MapDataset.map_with_index`: the record with its index in the source."""
  return index, record
