"""The name -> class registries behind config.model.name, encoders, fusions and evals."""

import pytest

from cmjax import evaluators
from cmjax.models import encoders
from cmjax.models import registry as model_registry
from cmjax.models.fusion import common as fusion_common
from cmjax.registry import Registry


def test_register_get_and_lazy_builtins():
  loaded = []
  reg = Registry(
    "widget", config_key="config.widget.name", load_builtins=lambda: loaded.append(True)
  )

  @reg.register("a")
  class A:
    pass

  assert not loaded  # registering does not import the built-ins
  assert reg.get("a") is A and "a" in reg and reg.names() == ["a"]
  assert loaded
  with pytest.raises(
    ValueError,
    match=r"unknown widget 'b' \(config.widget.name\); "
    r"known: \['a'\]",
  ):
    reg.get("b")
  with pytest.raises(ValueError, match=r"\(config.other\)"):
    reg.get("b", "config.other")


def test_registering_a_second_class_under_a_taken_name_is_refused():
  reg = Registry("widget")

  @reg.register("a")
  class A:
    pass

  assert reg.register("a")(A) is A  # re-importing the same module is fine
  with pytest.raises(ValueError, match="widget 'a' is already registered"):
    reg.register("a")(type("B", (), {}))


def test_builtin_registries_are_filled_on_first_lookup():
  assert {"contrastive", "fusion_classifier"} <= set(model_registry.known_models())
  assert {"concat", "bottleneck", "gated"} <= set(fusion_common.known_fusions())
  assert {"vit", "resnet"} <= set(encoders.known_encoders("image")["image"])
  assert {"transformer", "cnn", "ast"} <= set(encoders.known_encoders()["audio"])


def test_unknown_evaluator_type_names_the_eval_entry():
  config = {"evals": {"val": {"type": "bleu"}}}
  with pytest.raises(
    ValueError,
    match=r"unknown evaluator type 'bleu' "
    r"\(config.evals.val.type\).*'retrieval'",
  ):
    evaluators.build_evaluators(config, ctx=None)
