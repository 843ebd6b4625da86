"""Evaluators, looked up by `type` from `config.evals.<name>`."""

from cmjax.evaluators.common import EvalContext, get_evaluator_cls

__all__ = ["EvalContext", "build_evaluators", "get_evaluator_cls"]


def build_evaluators(config, ctx: EvalContext) -> dict:
  """`{name: evaluator}` for every entry of `config.evals`."""
  out = {}
  for name, entry in config.get("evals", {}).items():
    if "type" not in entry:
      raise ValueError(f"config.evals.{name} needs a 'type' (e.g. 'retrieval' or 'zeroshot').")
    out[name] = get_evaluator_cls(entry["type"], f"config.evals.{name}.type")(entry, ctx)
  return out
