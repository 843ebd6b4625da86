"""The train state and its sharded creation.

`TrainState` holds everything a train step updates. `extra` is room for what a
train step of `config.step` adds (EMA weights, a teacher, a second optimizer's
state): it is checkpointed, sharded and restored like the parameters, and its
arrays get their shardings from the same logical axis names when they are built
from the (boxed) parameters.
"""

from __future__ import annotations

from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from cmjax import sharding


@flax.struct.dataclass
class TrainState:
  """Everything a step updates.

  `model_state` holds the model's non-parameter collections (BatchNorm's
  `batch_stats`), `{}` for models without any; `extra` the train step's own
  state, `{}` for the standard step.
  """

  step: jax.Array
  params: Any
  opt_state: Any
  model_state: Any
  extra: Any = flax.struct.field(default_factory=dict)

  def variables(self) -> dict:
    """The `model.apply` variables: `{'params': ..., **model_state}`."""
    return {"params": self.params, **self.model_state}


def create_train_state(
  model,
  tx,
  batch_spec: dict,
  mesh,
  rules,
  *,
  seed: int,
  init_extra: Callable[[Any, jax.Array], Any] | None = None,
):
  """Returns `(abstract_state, state_shardings, init)`; `init()` builds the state sharded.

  The state is never materialised on one device first: its shapes come from
  `jax.eval_shape`, its shardings from the parameters' logical axis names, and
  the jitted initialiser writes every array straight into its shards.

  Args:
    model: the flax module; `model.init(rng, batch, train=False)`.
    tx: the optax optimizer.
    batch_spec: `{key: ShapeDtypeStruct}` of a global batch (the data's spec).
    mesh, rules: the device mesh and logical-axis rules.
    seed: the initialisation seed.
    init_extra: `(boxed params, rng) -> extra state` of the train step, or None.
  """
  dummy = {k: jnp.zeros(v.shape, v.dtype) for k, v in batch_spec.items()}

  def init_boxed(rng, loaded=None):
    # The model's key is the seed's key itself, whatever the step adds, so a step
    # with extra state initialises the same model as the standard step.
    variables = dict(model.init(rng, dummy, train=False))
    params = variables.pop("params")
    if loaded:  # parameters from another run (cmjax/init_from.py), before the optimizer sees them
      params = replace_params(params, loaded)
    extra = init_extra(params, jax.random.fold_in(rng, 1)) if init_extra else {}
    return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      opt_state=tx.init(params),
      model_state=variables,
      extra=extra,
    )

  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    abstract_boxed = jax.eval_shape(init_boxed, jax.random.key(0))
  shardings = sharding.tree_shardings(abstract_boxed, mesh, rules)
  abstract = jax.tree_util.tree_map(
    lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
    sharding.unbox(abstract_boxed),
    shardings,
  )
  init = jax.jit(
    lambda rng, loaded: sharding.unbox(init_boxed(rng, loaded)), out_shardings=shardings
  )
  return abstract, shardings, lambda loaded=None: init(jax.random.key(seed), loaded or {})


def param_name(path) -> str:
  """'image_encoder/patch_embed/kernel': a parameter's name as `init_from` rules see it."""
  return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def replace_params(params, loaded: dict):
  """`params` (flax's boxed or plain arrays) with the arrays of `loaded`
  (`{param_name: array}`) in place of those it names."""

  def swap(path, leaf):
    new = loaded.get(param_name(path))
    if new is None:
      return leaf
    if isinstance(leaf, nn.Partitioned):
      return leaf.replace_boxed(new.astype(leaf.value.dtype))
    return new.astype(leaf.dtype)

  return jax.tree_util.tree_map_with_path(
    swap, params, is_leaf=lambda x: isinstance(x, nn.Partitioned)
  )
