"""Relation learning end to end: VQA (spoken questions, a graph network, answers
per question type), relation classification, image-text matching with
compositional evaluation."""

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


def test_spoken_vqa_with_a_graph_network_reports_accuracy_per_question_type(tmp_path):
  helpers.run_train(str(tmp_path), "shapes_vqa.py:tiny,fusion=graph_network,question=spoken")
  m = _metrics(tmp_path)
  prefix = "classification/answer_label/by_question_type"
  counts = {t: m.get(f"{prefix}/{t}/count", 0) for t in ("attribute", "existence", "count")}
  n = helpers.load_config("shapes_vqa.py", "tiny").evals.classification.num_examples
  total = sum(v for k, v in m.items() if k.startswith(prefix) and k.endswith("/count"))
  assert total == n and all(counts.values()), counts
  assert 0 <= m["classification/answer_label/accuracy"] <= 1
  # Where the graph network looked, drawn for held-out examples.
  assert (tmp_path / "maps_examples.png").exists() and 0 <= m["relation_maps/entropy"] <= 1


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
