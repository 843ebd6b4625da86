r"""Where the train step's time goes: each part of the model alone, cmjax vs PyTorch.

  pip install -e ".[bench]"
  python benchmarks/component_speed.py --out=benchmarks/results/component_speed_cpu.json
  python benchmarks/component_speed.py --sizes=base --parts=attention,mlp

For each size of `throughput_sizes.py` (the Transformer's batch, tokens,
width, heads and MLP width of its image tower) this times forward + backward
(gradients of a sum of squares with respect to the parameters and the input)
of a stack of `--layers` residual copies of one part:

  layer_norm   x + LN(x)
  attention    x + Attn(x)          (fused q/k/v projection, softmax attention, output projection)
  attention_core   softmax attention alone on `[batch, tokens, heads, head_dim]` q, k, v
               (cmjax's `attend`; PyTorch's `scaled_dot_product_attention` on the same views)
  mlp          x + MLP(x)           (Dense, tanh-GELU, Dense)
  block        the whole pre-LN encoder block
  conv_stem    the ViT's stride-2 3x3 convolution stem on the size's images (sizes with stem='conv')

in cmjax (the library's own modules, jitted) and in PyTorch eager
(`torch_reference.py`'s layers), alternating, `--repeats` rounds, medians. The
ratio is PyTorch's time over cmjax's: above 1 means cmjax is faster, as in
`train_throughput.py`'s table. The parts are timed out of context (XLA fuses
across them in the real step), so they locate a gap rather than add up to it.
"""

import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from benchmarks import throughput_sizes  # noqa: E402
from cmjax import host_memory  # noqa: E402
from cmjax.models import transformer, vit  # noqa: E402
from cmjax.models.attention import MultiHeadAttention, attend  # noqa: E402

PARTS = ("layer_norm", "attention", "attention_core", "mlp", "block", "conv_stem")
flags.DEFINE_list("sizes", ["small", "base"], "Sizes of throughput_sizes.py.")
flags.DEFINE_list("parts", list(PARTS), f"Parts to time, of {PARTS}.")
flags.DEFINE_integer("layers", 3, "Residual copies of the part in the timed stack.")
flags.DEFINE_integer("repeats", 5, "Alternating timing rounds.")
flags.DEFINE_integer("calls", 10, "Timed calls per round (median).")
flags.DEFINE_string("out", None, "Also write the rows to this JSON file.")
FLAGS = flags.FLAGS


class _Stack(nn.Module):
  """`layers` residual copies of a cmjax part: `[batch, tokens, width]` -> same."""

  part: str
  layers: int
  num_heads: int
  mlp_dim: int

  @nn.compact
  def __call__(self, x):
    for _ in range(self.layers):
      if self.part == "layer_norm":
        x = x + transformer.layer_norm()(x)
      elif self.part == "attention":
        x = x + MultiHeadAttention(self.num_heads)(x)
      elif self.part == "mlp":
        x = x + transformer.MlpBlock(self.mlp_dim)(x)
      else:
        x = transformer.EncoderBlock(self.num_heads, self.mlp_dim)(x)
    return x


class _ConvStem(vit.ViT):
  """The ViT's own conv stem alone: `[batch, H, W, 3]` -> `[batch, H/p, W/p, width]`."""

  @nn.compact
  def __call__(self, x):  # pylint: disable=arguments-differ
    return self._conv_stem(x)  # pylint: disable=protected-access


def _torch_stack(part, layers, width, heads, mlp):
  """The same stack from the reference's layers; returns `x -> output`."""
  from benchmarks import torch_reference  # pylint: disable=g-import-not-at-top

  blocks = [torch_reference.Block(width, heads, mlp) for _ in range(layers)]
  one = {
    "layer_norm": lambda b, x: x + b.ln_attn(x),
    "attention": lambda b, x: x + b.attention(x),
    "mlp": lambda b, x: x + b.mlp(x),
    "block": lambda b, x: b(x, None),
  }[part]

  def run(x):
    for b in blocks:
      x = one(b, x)
    return x

  return run


def _pair(size: str, part: str, torch, layers: int, batch_size: int = 0):
  """(cmjax fwd+bwd fn, PyTorch fwd+bwd fn or None) of `part` at `size`, or
  None where the size has no such part (a patch stem has no conv stem)."""
  config = throughput_sizes.config_for(size, batch_size=batch_size)
  image = dict(config.model.image)
  batch, width = config.batch_size, image["width"]
  rng = np.random.default_rng(0)
  if part == "conv_stem":
    if image.get("stem") != "conv":
      return None
    side = config.data.image_size
    x = jnp.asarray(rng.standard_normal((batch, side, side, 3)), jnp.float32)
    model = _ConvStem(patch_size=image["patch_size"], width=width, stem="conv")
    params = model.init(jax.random.PRNGKey(0), x)
    grad = jax.jit(jax.grad(lambda p, x: jnp.sum(model.apply(p, x) ** 2)))
    jax_fn = lambda: jax.block_until_ready(grad(params, x))
    torch_fn = None
    if torch is not None:
      from benchmarks import torch_reference  # pylint: disable=g-import-not-at-top

      reference = torch_reference.ViT(side, image["patch_size"], width, 1, 1, 4, stem="conv")
      tx = torch.randn(batch, 3, side, side)
      torch_fn = lambda: (reference.apply_stem(tx) ** 2).sum().backward()
    return jax_fn, torch_fn
  tokens = (config.data.image_size // image["patch_size"]) ** 2
  heads, mlp = image["num_heads"], image["mlp_dim"]
  if part == "attention_core":
    shape = (batch, tokens, heads, width // heads)
    q, k, v = (jnp.asarray(rng.standard_normal(shape), jnp.float32) for _ in range(3))
    grad = jax.jit(jax.grad(lambda q, k, v: jnp.sum(attend(q, k, v) ** 2), argnums=(0, 1, 2)))
    jax_fn = lambda: jax.block_until_ready(grad(q, k, v))
    torch_fn = None
    if torch is not None:
      tq, tk, tv = (torch.randn(*shape, requires_grad=True) for _ in range(3))
      sdpa = torch.nn.functional.scaled_dot_product_attention
      torch_fn = lambda: (
        (sdpa(*(a.transpose(1, 2) for a in (tq, tk, tv))).transpose(1, 2) ** 2).sum().backward()
      )
    return jax_fn, torch_fn
  x = jnp.asarray(rng.standard_normal((batch, tokens, width)), jnp.float32)
  model = _Stack(part, layers, heads, mlp)
  params = model.init(jax.random.PRNGKey(0), x)
  grad = jax.jit(jax.grad(lambda p, x: jnp.sum(model.apply(p, x) ** 2), argnums=(0, 1)))
  jax_fn = lambda: jax.block_until_ready(grad(params, x))
  torch_fn = None
  if torch is not None:
    run = _torch_stack(part, layers, width, heads, mlp)
    tx = torch.randn(batch, tokens, width, requires_grad=True)
    torch_fn = lambda: (run(tx) ** 2).sum().backward()
  return jax_fn, torch_fn


def _median_seconds(fn, calls: int) -> float:
  times = []
  for _ in range(calls):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return statistics.median(times)


def time_parts(
  sizes, parts, torch=None, layers: int = 3, repeats: int = 5, calls: int = 10, batch_size: int = 0
):
  """Yields one row per (size, part): dict(size, part, cmjax_s, torch_s or None).

  Times are medians over `repeats` alternating rounds of each round's median
  of `calls` calls, after two warm-up calls (compilation) of each.
  """
  unknown = set(parts) - set(PARTS)
  if unknown:
    raise ValueError(f"parts: unknown {sorted(unknown)}; expected some of {PARTS}")
  for size in sizes:
    for part in parts:
      pair = _pair(size, part, torch, layers, batch_size)
      if pair is None:
        continue
      fns = [f for f in pair if f is not None]
      for f in fns:
        f(), f()
      rounds = [[_median_seconds(f, calls) for f in fns] for _ in range(repeats)]
      yield {
        "size": size,
        "part": part,
        "cmjax_s": statistics.median(r[0] for r in rounds),
        "torch_s": statistics.median(r[1] for r in rounds) if len(fns) > 1 else None,
      }


def main(argv):
  del argv
  host_memory.keep_freed_memory()  # as train.py and train_throughput.py
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    torch = None
    print("PyTorch is not installed (pip install -e '.[bench]'): cmjax column only.")
  print(
    f"forward + backward of {FLAGS.layers} residual layers, ms, median of "
    f"{FLAGS.repeats} alternating rounds of {FLAGS.calls} calls"
  )
  print("| size | part | cmjax ms | PyTorch ms | cmjax / PyTorch speed |\n|---|---|---|---|---|")
  rows = []
  for row in time_parts(FLAGS.sizes, FLAGS.parts, torch, FLAGS.layers, FLAGS.repeats, FLAGS.calls):
    rows.append(row)
    j, t = row["cmjax_s"], row["torch_s"]
    print(
      f"| {row['size']} | {row['part']} | {1e3 * j:.1f} | "
      f"{'—' if t is None else f'{1e3 * t:.1f}'} | "
      f"{'—' if t is None else f'{t / j:.2f}x'} |",
      flush=True,
    )
  if FLAGS.out:
    with open(FLAGS.out, "w") as f:
      json.dump(
        {
          "jax": jax.__version__,
          "torch": torch.__version__ if torch else None,
          "layers": FLAGS.layers,
          "repeats": FLAGS.repeats,
          "calls": FLAGS.calls,
          "rows": rows,
        },
        f,
        indent=1,
      )
    print(f"Wrote {FLAGS.out}")


if __name__ == "__main__":
  app.run(main)
