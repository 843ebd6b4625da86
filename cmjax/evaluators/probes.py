"""Probes of frozen embeddings: how much a run's representation knows about a
label, without training the model further.

  evals.probe = dict(type="linear_probe", modality="image", label="shape_label",
                     num_train=2000, num_examples=1000, l2=[1e-4, 1e-3, 1e-2])
  evals.knn = dict(type="knn", modality="image", label="shape_label", k=[1, 10],
                   few_shot=dict(ways=4, shots=[1, 5], queries=5, episodes=200))

Both embed `num_train` examples of `train_split` ('train') and `num_examples`
of `split` ('test') with the model's `encode_<modality>` (any contrastive
run, converted weights included), then:

* `linear_probe`: a multinomial logistic regression (`probe_math.fit_logistic`);
  with several `l2` values the best on a held-back fifth of the train
  embeddings is refitted on all of them. Metrics
  `linear_probe/<label>_accuracy`, `linear_probe/<label>_l2`.
* `knn`: cosine k-nearest-neighbour votes for each `k` (`knn/<label>_k<k>`),
  and with `few_shot`, N-way K-shot episodes on the held-out embeddings
  classified by class prototypes (`knn/<label>_<N>way_<K>shot`, the mean over
  episodes; `..._ci95` half the 95% interval).

"""

from __future__ import annotations

import logging
import time

import numpy as np

from cmjax.data import pipeline
from cmjax.data import spec as spec_lib
from cmjax.evaluators import common, metrics, probe_math


class _FrozenEmbeddings:
  """Train and held-out inputs of one modality with their labels, embedded on `run`."""

  def __init__(self, name: str, entry, ctx: common.EvalContext):
    """`name`: the metrics' prefix and the evaluator's type in messages."""
    t0 = time.time()
    self.name = name
    self.every_steps = common.every(entry, 0)
    dataset = ctx.dataset
    self.modality = entry.get("modality", "image")
    self.label = entry.get("label")
    if not self.label:
      raise ValueError(
        f"a config.evals entry of type {name!r} needs `label`: one of {sorted(dataset.spec.labels)}"
      )
    self.classes = dataset.num_classes(self.label)  # raises naming the dataset's labels
    if self.modality not in ctx.modalities:
      raise ValueError(
        f"config.evals ({name}): modality={self.modality!r}, but the model embeds {ctx.modalities}"
      )
    method = spec_lib.modality(self.modality).encode_method
    if not hasattr(ctx.model, method):
      raise ValueError(
        f"config.evals ({name}): model {type(ctx.model).__name__} has no {method}; probes need "
        "a model that embeds one modality alone (e.g. 'contrastive')"
      )
    keys = spec_lib.modality(self.modality).keys
    options = dict(entry.get("source_options") or {})

    def arrays(split: str, count: int):
      source = dataset.source(split, seed=common.split_seed(entry), num_examples=count, **options)

      def prep(record):
        row = dataset.eval_row(record)
        return {**{k: row[k] for k in keys}, "label": np.int32(row[self.label])}

      out = pipeline.materialize(source, prep)
      return tuple(out[k] for k in keys), out["label"]

    self.train_inputs, self.train_y = arrays(
      entry.get("train_split", "train"), int(entry.get("num_train", 1000))
    )
    self.test_inputs, self.test_y = arrays(
      entry.get("split", "test"), int(entry.get("num_examples", 1000))
    )
    self.encoder = common.Encoder(ctx.model, method, int(entry.get("batch_size", 250)))
    logging.info(
      "%s: %d train and %d held-out %s examples ready in %.1fs",
      name,
      len(self.train_y),
      len(self.test_y),
      self.modality,
      time.time() - t0,
    )

  def embed(self, variables):
    return self.encoder(variables, *self.train_inputs), self.encoder(variables, *self.test_inputs)


@common.register("linear_probe")
class LinearProbeEvaluator(_FrozenEmbeddings):
  def __init__(self, entry, ctx: common.EvalContext):
    super().__init__("linear_probe", entry, ctx)
    l2 = entry.get("l2", [1e-4, 1e-3, 1e-2])
    self.l2 = [float(v) for v in (l2 if isinstance(l2, (list, tuple)) else [l2])]
    if not self.l2 or min(self.l2) <= 0:
      raise ValueError(f"config.evals (linear_probe): l2={l2!r}; positive values expected")

  def run(self, variables):
    train, test = self.embed(variables)
    y = self.train_y
    best = self.l2[0]
    if len(self.l2) > 1:
      cut = len(y) - max(len(y) // 5, 1)
      scores = []
      for l2 in self.l2:
        w, b = probe_math.fit_logistic(train[:cut], y[:cut], self.classes, l2)
        scores.append(metrics.accuracy(y[cut:], np.argmax(train[cut:] @ w + b, axis=1)))
      best = self.l2[int(np.argmax(scores))]
    w, b = probe_math.fit_logistic(train, y, self.classes, best)
    pred = np.argmax(test @ w + b, axis=1)
    yield f"{self.name}/{self.label}_accuracy", metrics.accuracy(self.test_y, pred)
    yield f"{self.name}/{self.label}_l2", best


@common.register("knn")
class KnnEvaluator(_FrozenEmbeddings):
  def __init__(self, entry, ctx: common.EvalContext):
    super().__init__("knn", entry, ctx)
    k = entry.get("k", [1, 10])
    self.ks = [int(v) for v in (k if isinstance(k, (list, tuple)) else [k])]
    few = dict(entry.get("few_shot") or {})
    shots = few.get("shots", [1, 5])
    self.few_shot = None
    if few:
      self.few_shot = dict(
        ways=int(few.get("ways", min(5, self.classes))),
        shots=[int(s) for s in (shots if isinstance(shots, (list, tuple)) else [shots])],
        queries=int(few.get("queries", 5)),
        episodes=int(few.get("episodes", 100)),
      )

  def run(self, variables):
    train, test = self.embed(variables)
    for k in self.ks:
      pred = probe_math.knn_predict(train, self.train_y, test, k, self.classes)
      yield f"{self.name}/{self.label}_k{k}", metrics.accuracy(self.test_y, pred)
    if self.few_shot:
      fs = self.few_shot
      for shots in fs["shots"]:
        acc = probe_math.few_shot_episodes(
          test, self.test_y, fs["ways"], shots, fs["queries"], fs["episodes"]
        )
        key = f"{self.name}/{self.label}_{fs['ways']}way_{shots}shot"
        yield key, float(acc.mean())
        yield f"{key}_ci95", float(1.96 * acc.std() / np.sqrt(len(acc)))
