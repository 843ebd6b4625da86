"""Train steps, looked up by `config.step` (default 'standard'), and their jitting.

A train step is built from the experiment's pieces and is then a pure function

  step(state: TrainState, batch) -> (state, metrics)

  @steps.register("my_step")
  class MyStep(steps.StandardStep):
    def init_extra(self, params, rng):   # boxed params -> extra state (or {})
      return {"teacher": params}
    def __call__(self, state, batch): ...

`init_extra` builds `TrainState.extra`, which is checkpointed, sharded (arrays
built from the boxed parameters keep their logical axes) and restored like the
rest of the state. The trainer jits the step once with explicit shardings
(`jit_step`, `jit_multi_step`); it never looks inside.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from cmjax import grad_accum, multi_step, sharding
from cmjax.registry import Registry
from cmjax.train_state import TrainState


def _import_builtin_steps() -> None:
  pass  # the built-in steps below register themselves when this module loads


STEPS = Registry("train step", config_key="config.step", load_builtins=_import_builtin_steps)
register = STEPS.register


@register("standard")
class StandardStep:
  """One optimizer update from the objective's gradient (with `grad_accum_steps`
  micro-batches: `config.grad_accum` 'mean' or 'cached_embeddings', see
  `cmjax/grad_accum.py` for which objectives each reproduces exactly).

  Args:
    config: the experiment config.
    model: the flax module.
    objective: `(outputs, batch, step) -> (loss, metrics)`.
    tx, schedule: the optimizer and its base learning-rate schedule.
  """

  def __init__(self, config, model, objective, tx, schedule):
    self.model, self.objective, self.tx, self.schedule = model, objective, tx, schedule
    self.base_rng = jax.random.key(config.seed + 1)
    self.k = int(config.get("grad_accum_steps", 1))
    self.method = config.get("grad_accum", "mean")
    if self.k < 1 or self.method not in grad_accum.METHODS:
      raise ValueError(
        f"config.grad_accum_steps={self.k}, config.grad_accum={self.method!r}: "
        f"expected a positive number of steps and one of {grad_accum.METHODS}."
      )

  def init_extra(self, params, rng) -> Any:
    del params, rng
    return {}

  def apply_fn(self, params, model_state, batch, rng):
    """`(outputs, new model_state)` of the model in training mode."""
    variables = {"params": params, **model_state}
    if model_state:
      # BatchNorm: batch statistics in, updated running averages out.
      outputs, new_state = self.model.apply(
        variables, batch, train=True, rngs={"dropout": rng}, mutable=list(model_state)
      )
      return outputs, dict(new_state)
    return self.model.apply(variables, batch, train=True, rngs={"dropout": rng}), {}

  def gradients(self, state: TrainState, batch):
    """`(loss, metrics, model_state, grads)` of the objective at `state.params`."""
    rng = jax.random.fold_in(self.base_rng, state.step)
    loss_fn = lambda outputs, b: self.objective(outputs, b, state.step)
    args = (self.apply_fn, loss_fn, state.params, state.model_state, batch, rng)
    if self.k == 1:
      return grad_accum.full_batch_grads(*args)
    if self.method == "mean":
      return grad_accum.mean_microbatch_grads(*args, self.k)
    return grad_accum.cached_embedding_grads(*args, self.k)

  def __call__(self, state: TrainState, batch):
    loss, metrics, model_state, grads = self.gradients(state, batch)
    updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(
      metrics, loss=loss, grad_norm=optax.tree.norm(grads), lr=self.schedule(state.step)
    )
    return state.replace(
      step=state.step + 1, params=params, opt_state=opt_state, model_state=dict(model_state)
    ), metrics


@register("ema")
class EMAStep(StandardStep):
  """The standard step, plus an exponential moving average of the parameters in
  `state.extra['ema_params']` (`config.ema_decay`, default 0.999), e.g. for a
  teacher or for evaluation with averaged weights."""

  def __init__(self, config, model, objective, tx, schedule):
    super().__init__(config, model, objective, tx, schedule)
    self.decay = float(config.get("ema_decay", 0.999))
    if not 0.0 <= self.decay < 1.0:
      raise ValueError(f"config.ema_decay={self.decay}; expected a number in [0, 1).")

  def init_extra(self, params, rng):
    del rng
    # Built from the boxed params: the copy keeps their logical axes (and shardings).
    return {"ema_params": jax.tree_util.tree_map(jnp.copy, params)}

  def __call__(self, state, batch):
    state, metrics = super().__call__(state, batch)
    d = self.decay
    ema = jax.tree_util.tree_map(
      lambda e, p: d * e + (1.0 - d) * p, state.extra["ema_params"], state.params
    )
    return state.replace(extra={**state.extra, "ema_params": ema}), metrics


def build_step(config, model, objective, tx, schedule):
  """The train step `config.step` names (default 'standard'), guarded against
  non-finite updates (`SkipNonFinite`) unless `config.skip_non_finite` is False."""
  step = STEPS.get(config.get("step", "standard"))(config, model, objective, tx, schedule)
  return SkipNonFinite(step) if config.get("skip_non_finite", True) else step


class SkipNonFinite:
  """Any train step, with an update whose loss or gradients hold NaN or
  infinity skipped: the whole state (parameters, optimizer state, step
  counter) stays as it was, so the run goes on as if that batch had not come.
  `metrics['skipped']` is 1 for such a step (0 otherwise); the trainer counts
  them when it next reads the metrics, adding no synchronisation per step.
  """

  def __init__(self, step):
    self.step = step

  def __getattr__(self, name):  # init_extra, apply_fn, ...: the wrapped step's
    return getattr(self.step, name)

  @staticmethod
  def finite(new_state, metrics) -> jax.Array:
    """Whether the update(s) had finite loss and gradients (all of a chunk's)."""
    # The loss and the gradients decide (other metrics may be NaN by design,
    # e.g. an accuracy over no examples of a class).
    ok = jnp.all(jnp.isfinite(metrics["loss"]))
    if "grad_norm" in metrics:
      return ok & jnp.all(jnp.isfinite(metrics["grad_norm"]))
    return ok & jnp.isfinite(optax.tree.norm(new_state.params))  # check what it made

  def __call__(self, state: TrainState, batch):
    new_state, metrics = self.step(state, batch)
    ok = self.finite(new_state, metrics)
    # The barrier keeps XLA from fusing the select into the update (which
    # changes its rounding): a finite step is bit for bit the bare step.
    new_state, state = jax.lax.optimization_barrier((new_state, state))
    kept = jax.tree_util.tree_map(lambda new, old: jnp.where(ok, new, old), new_state, state)
    return kept, dict(metrics, skipped=jnp.where(ok, 0, 1).astype(jnp.int32))

  def chunk(self, bare_chunk, guarded_chunk):
    """Several steps in one call: the bare steps, and only if one of them was
    not finite, the chunk again with each step guarded. Per-step selects inside
    the unrolled chunk would change how XLA fuses across steps, and so the
    rounding; this way a finite chunk is bit for bit the bare one."""

    def run(state, batches):
      new_state, metrics = bare_chunk(state, batches)
      ok = self.finite(new_state, metrics)
      new_state = jax.lax.optimization_barrier(new_state)
      good = (new_state, dict(metrics, skipped=jnp.zeros_like(metrics["loss"], jnp.int32)))
      return jax.lax.cond(ok, lambda: good, lambda: guarded_chunk(state, batches))

    return run


def jit_step(step, state_shardings, mesh):
  """`step` jitted once: the state as its shardings say, the batch split over the
  data axes, metrics replicated; the old state's buffers donated to the new one."""
  return jax.jit(
    step,
    in_shardings=(state_shardings, sharding.batch_sharding(mesh)),
    out_shardings=(state_shardings, sharding.replicated(mesh)),
    donate_argnums=(0,),
  )


def jit_multi_step(step, state_shardings, mesh):
  """`(state, batches [steps, batch, ...]) -> (state, metrics [steps])`: several
  steps in one call (`config.steps_per_call`; see `cmjax/multi_step.py` for why)."""
  fn = multi_step.scan_steps(step)
  if isinstance(step, SkipNonFinite):
    fn = step.chunk(multi_step.scan_steps(step.step), fn)
  return jax.jit(
    fn,
    in_shardings=(state_shardings, multi_step.stacked_batch_sharding(mesh)),
    out_shardings=(state_shardings, sharding.replicated(mesh)),
    donate_argnums=(0,),
  )
