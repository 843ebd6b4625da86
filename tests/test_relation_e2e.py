"""Relation learning: the VQA config's variants and evaluators (answers per
question type, where a graph network looked), image-text matching trained end
to end with compositional evaluation."""

import json

import numpy as np
import pytest

from tests import helpers


def _metrics(workdir):
  with open(workdir / "metrics.json") as f:
    return json.load(f)


def test_vqa_config_variants():
  c = helpers.load_config("shapes_vqa.py", "task=relation,fusion=relation_network,inputs=text")
  assert c.data.text_field == "pair_caption" and c.data.min_objects == 2
  assert dict(c.model.heads) == {"relation_label": 4} and tuple(c.model.modalities) == ("text",)
  c = helpers.load_config("shapes_vqa.py", "question=spoken,inputs=both")
  assert tuple(c.model.modalities) == ("image", "audio") and c.data.spoken == "question"
  assert c.data.speech and c.evals.classification.group_by == "question_type"
  for bad in ("task=caption", "inputs=all", "question=sung", "task=relation,question=spoken"):
    with pytest.raises(ValueError, match=bad.split(",")[-1].split("=")[0]):
      helpers.load_config("shapes_vqa.py", bad)


def test_vqa_evaluators_report_accuracy_per_question_type_and_draw_maps(tmp_path):
  # The spoken question through a graph network (its training runs in
  # colabs/vqa.ipynb's test); here its evaluators on initial parameters.
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  from cmjax.evaluators import get_evaluator_cls  # pylint: disable=g-import-not-at-top

  config = helpers.load_config("shapes_vqa.py", "tiny,fusion=graph_network,question=spoken")
  ctx = helpers.eval_context(config)
  batch = {k: jnp.zeros(s.shape, s.dtype) for k, s in ctx.dataset.spec.batch(2).items()}
  v = ctx.model.init(jax.random.key(0), batch)
  entry = config.evals.classification
  metrics = dict(get_evaluator_cls("classification")(entry, ctx).run(v))
  prefix = "classification/answer_label/by_question_type"
  counts = {k: c for k, c in metrics.items() if k.startswith(prefix) and k.endswith("/count")}
  assert sum(counts.values()) == entry.num_examples and len(counts) >= 3, counts
  per_type = [metrics[k[: -len("count")] + "accuracy"] * c for k, c in counts.items()]
  np.testing.assert_allclose(
    sum(per_type) / entry.num_examples, metrics["classification/answer_label/accuracy"]
  )
  maps = get_evaluator_cls("relation_maps")(config.evals.maps, ctx)
  assert 0 <= dict(maps.run(v))["relation_maps/entropy"] <= 1
  (grid,) = maps.pictures().values()
  n = config.evals.maps.num_examples
  assert grid.dtype == np.uint8 and grid.shape[1] == n * 2 * config.data.image_size
  example = maps.artifacts()["examples"][0]
  assert example["text"].split()[0] in ("what", "is", "how") and len(example["map"]) > 1


def test_matching_head_trains_and_is_evaluated_compositionally(tmp_path):
  helpers.run_train(str(tmp_path), "shapes_contrastive.py:tiny,loss=itm_mined")
  m = _metrics(tmp_path)
  for swap in ("attribute", "relation", "order"):
    assert (
      0 <= m[f"compositionality/{swap}/accuracy"] <= 1 and m[f"compositionality/{swap}/count"] > 0
    )
  with open(tmp_path / "metrics_history.jsonl") as f:
    rows = [json.loads(line) for line in f]
  losses = [r["itm/loss"] for r in rows if "itm/loss" in r]
  assert losses and np.all(np.isfinite(losses))
