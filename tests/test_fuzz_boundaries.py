"""Property-based tests of the boundaries a user controls: config values and
batches. Whatever the value, the result is a run that starts with finite
parameters and finite updates, or a `ValueError` that names the key; never a
raw error from deep inside (optax, XLA, flax), a hang, or NaN parameters.

The values are drawn from the edges (0, -1, odd sizes, NaN, infinities, huge
numbers) with a fixed derandomized seed, so every CI run tries the same cases.
"""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cmjax import experiment, sharding
from cmjax.data import guard
from cmjax.data import spec as spec_lib
from tests import helpers

INT_KEYS = [
  "batch_size",
  "total_steps",
  "log_every_steps",
  "checkpoint_every_steps",
  "steps_per_call",
  "grad_accum_steps",
  "keep_checkpoints",
  "optim.warmup_steps",
  "model.embed_dim",
  "data.max_text_len",
  *(
    f"model.{m}.{k}"
    for m in ("image", "text", "audio")
    for k in ("width", "depth", "num_heads", "mlp_dim")
  ),
  "model.image.patch_size",
  "model.audio.n_fft",
  "model.audio.hop_length",
  "model.audio.n_mels",
]
FLOAT_KEYS = [
  "optim.lr",
  "optim.weight_decay",
  "optim.b1",
  "optim.b2",
  "optim.grad_clip_norm",
  "optim.min_lr_ratio",
  "model.logit_scale_init",
  "model.logit_bias_init",
  "objectives.contrastive.weight",
]
EDGE_INTS = st.sampled_from([-1, 0, 1, 2, 3, 5, 7, 16, 17, 10**12])
EDGE_FLOATS = st.sampled_from(
  [float("nan"), float("inf"), float("-inf"), -1.0, 0.0, 1e-8, 0.5, 0.999, 1.0, 2.0, 1e30]
)
FUZZ = settings(
  max_examples=12,
  derandomize=True,
  deadline=None,
  suppress_health_check=[HealthCheck.too_slow],
)

_BASE = None


def _config():
  global _BASE
  if _BASE is None:
    _BASE = helpers.load_config("shapes_contrastive.py", "tiny")
  return _BASE.copy_and_resolve_references()


def _set(config, key, value):
  node = config
  *parents, last = key.split(".")
  for p in parents:
    node = node[p]
  node[last] = value


def _starts_sound(exp):
  """One optimizer update of (zero) parameters of the model's shapes is finite.

  Initial values are not drawn here (an eager init takes seconds per case): a
  model's initial values are finite when its config's floats are, which
  `validate_config` checks, and a non-finite step is skipped by the step's guard.
  """
  batch = {k: jax.ShapeDtypeStruct((2, *s.shape[1:]), s.dtype) for k, s in exp.batch_spec().items()}
  with jax.set_mesh(exp.mesh):
    shapes = jax.eval_shape(lambda b: exp.model.init(jax.random.key(0), b, train=False), batch)
  params = jax.tree_util.tree_map(
    lambda s: jnp.zeros(s.shape, s.dtype), sharding.unbox(shapes["params"])
  )
  state = exp.tx.init(params)
  grads = jax.tree_util.tree_map(jnp.ones_like, params)
  for _ in range(2):
    updates, state = exp.tx.update(grads, state, params)
  assert all(bool(jnp.isfinite(u).all()) for u in jax.tree_util.tree_leaves(updates)), (
    "non-finite optimizer update"
  )


def _check(key, value):
  config = _config()
  _set(config, key, value)
  try:
    exp = experiment.build(config)
  except ValueError as e:
    name = key.rsplit(".", 1)[-1]
    assert name in str(e), f"{key}={value!r}: the error does not name the key: {e}"
    return
  _starts_sound(exp)


@FUZZ
@given(key=st.sampled_from(INT_KEYS), value=EDGE_INTS)
def test_integer_config_values_build_or_name_the_key(key, value):
  if key.startswith(("model.", "data.")) and value == 10**12:
    value = 257  # a huge layer is a valid request; it would only fill the memory here
  _check(key, value)


@FUZZ
@given(key=st.sampled_from(FLOAT_KEYS), value=EDGE_FLOATS)
def test_float_config_values_build_or_name_the_key(key, value):
  _check(key, value)


# ----------------------------------------------------------------------------
# Batches: whatever a dataset's preprocessing returns, a batch that reaches the
# step is one the checks passed, and it leaves the parameters finite.
# ----------------------------------------------------------------------------

_STEP = {}


def _step_and_batch():
  """A compiled step of the tiny shapes model and a real batch (built once)."""
  if not _STEP:
    from cmjax.data import pipeline

    config = _config()
    config.optim.warmup_steps = 0
    mesh = sharding.make_mesh({}, devices=jax.devices()[:1])
    exp, _, init, step = helpers.build_step(config, mesh)
    batch = next(iter(pipeline.train_dataset(config)))
    _STEP.update(exp=exp, state=init(), step=step, mesh=mesh, batch=batch, config=config)
  return _STEP


def _mutations(spec):
  """Strategies of changes to one key of a batch."""
  keys = sorted(spec.features)
  values = st.sampled_from(
    [float("nan"), float("inf"), -1.0, 0.0, 1.0, 1.5, 255.0, 1e6, -(2**31), 2**31 - 1]
  )
  return st.one_of(
    st.tuples(st.just("drop"), st.sampled_from(keys), st.just(None)),
    st.tuples(
      st.just("dtype"),
      st.sampled_from(keys),
      st.sampled_from(["float32", "float16", "int32", "int64", "uint8", "bool"]),
    ),
    st.tuples(st.just("shape"), st.sampled_from(keys), st.sampled_from([-1, 1, 7])),
    st.tuples(st.just("value"), st.sampled_from(keys), values),
  )


def _mutate(batch, kind, key, arg, rng):
  batch = {k: np.array(v) for k, v in batch.items()}
  if kind == "drop":
    del batch[key]
  elif kind == "dtype":
    batch[key] = batch[key].astype(arg)
  elif kind == "shape":
    x = batch[key]
    if x.ndim < 2:
      batch[key] = x.reshape(*x.shape, 1) if arg == 1 else x[: max(len(x) + arg, 0)]
    else:  # grow or shrink the last axis
      size = max(x.shape[-1] + arg, 1) if arg != 7 else x.shape[-1] * 2
      batch[key] = np.resize(x, (*x.shape[:-1], size))
  else:  # one value of one example, in the key's own dtype as a cast would make it
    x = batch[key]
    flat = x.reshape(-1).copy()
    with np.errstate(invalid="ignore", over="ignore"):
      flat[rng.integers(flat.size)] = np.asarray(arg).astype(x.dtype)
    batch[key] = flat.reshape(x.shape)
  return batch


def _batch_problems(batch, spec, config) -> str | None:
  """What the pipeline and the trainer would stop at: the batch's layout, then
  each row's values (`guard.Checker`, run on every example as it is made)."""
  try:
    spec_lib.check_batch(batch, spec.batch(len(next(iter(batch.values())))))
  except ValueError as e:
    return str(e)
  check = guard.Checker(spec.features, guard.rules(spec, config.data))
  for i in range(len(batch["image"])):
    found = check({k: v[i] for k, v in batch.items()})
    if found:
      return "; ".join(found)
  return None


@settings(max_examples=25, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_a_batch_is_stopped_naming_the_key_or_trains_to_finite_parameters(data):
  s = _step_and_batch()
  spec = s["exp"].spec
  kind, key, arg = data.draw(_mutations(spec))
  batch = _mutate(s["batch"], kind, key, arg, np.random.default_rng(0))
  problem = _batch_problems(batch, spec, s["config"])
  if problem is not None:
    assert repr(key) in problem, f"{kind} {key} {arg!r}: not named in {problem}"
    return
  # The step donates its state: the next example continues from this one's.
  state, metrics = s["step"](s["state"], sharding.global_batch(batch, s["mesh"]))
  s["state"] = state
  assert np.isfinite(float(metrics["loss"])), (kind, key, arg)
  leaves = jax.tree_util.tree_leaves(jax.device_get(state.params))
  assert all(np.isfinite(x).all() for x in leaves), (kind, key, arg)
