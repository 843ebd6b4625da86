r"""Train-step speed of cmjax against a PyTorch reference, and against the hardware.

  pip install -e ".[bench]"          # PyTorch, for the reference
  python benchmarks/train_throughput.py                     # tiny, small, base
  python benchmarks/train_throughput.py --sizes=base --repeats=9
  # on a GPU: bfloat16 compute, the base and CLIP ViT-B/16-sized models, no PyTorch
  python benchmarks/train_throughput.py --sizes=base,vit_b16 --dtype=bfloat16 \
      --torch=false --pipeline=false --out=train_throughput_gpu.json

One run measures, on this machine:
  1. the matmul peak: large square matmuls, float32 and bfloat16, in JAX and
     in PyTorch (GFLOP/s, median of repeats); the best float32 figure is the
     denominator of model FLOPs utilisation (MFU);
  2. for each model size (`throughput_sizes.py`): the full train step (forward,
     backward, clipping, AdamW) of cmjax's jitted step and of the PyTorch
     reference (`torch_reference.py`, same weights, same batch), timed after
     warm-up in alternation, `--repeats` times; medians. cmjax runs as the
     trainer does (`config.steps_per_call` steps per compiled call) and, for
     comparison, at one step per call. Model FLOPs per step
     come from the analytic count and are cross-checked against XLA's cost
     analysis of the compiled step;
  3. the input pipeline of the default experiment alone (examples/s) against
     what its train step consumes.

Prints one table per part; `--out FILE.json` also saves every number.
Without PyTorch installed, the PyTorch columns are left empty.
"""

import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from benchmarks import step_timing, throughput_sizes  # noqa: E402
from cmjax import host_memory, perf  # noqa: E402
from configs import shapes_contrastive  # noqa: E402

flags.DEFINE_list("sizes", ["tiny", "small", "base"], "Model sizes to time.")
flags.DEFINE_integer("repeats", 9, "Alternating timing rounds per size.")
flags.DEFINE_float("seconds", 2.0, "Rough length of one timing round per framework.")
flags.DEFINE_integer("matmul_size", 2048, "Side of the square matmuls of the peak.")
flags.DEFINE_string("dtype", "float32", "Compute dtype of the cmjax model.")
flags.DEFINE_bool("pipeline", True, "Also time the default experiment's input pipeline.")
flags.DEFINE_bool("torch", True, "Time the PyTorch reference (needs torch).")
flags.DEFINE_bool(
  "keep_freed_host_memory",
  True,
  "As train.py: malloc reuses freed memory (cmjax/host_memory.py); "
  "applies to both frameworks, which share the process.",
)
flags.DEFINE_string("out", None, "Write every number to this JSON file.")
FLAGS = flags.FLAGS


def _seconds(fn, repeats: int, reduce=statistics.median) -> float:
  fn()
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return reduce(times)


def matmul_peak(n: int, torch=None, repeats: int = 5) -> dict:
  """GFLOP/s of an `[n, n] @ [n, n]` matmul per framework and dtype.

  The fastest of `repeats` runs: a peak is what the hardware can do, and on a
  shared machine a median can land in a slow spell (one such run put the
  models above 100% "MFU").
  """
  out = {}
  rng = np.random.default_rng(0)
  a, b = rng.standard_normal((2, n, n), dtype=np.float32)
  for dtype in ("float32", "bfloat16"):
    x, y = jnp.asarray(a, dtype), jnp.asarray(b, dtype)
    f = jax.jit(jnp.matmul)
    out[f"jax/{dtype}"] = (
      2 * n**3 / _seconds(lambda: f(x, y).block_until_ready(), repeats, min) / 1e9
    )
    if torch is not None:
      tx, ty = (torch.from_numpy(v).to(getattr(torch, dtype)) for v in (a, b))
      # A CPU without bfloat16 units runs PyTorch's bfloat16 matmul at ~0.3
      # GFLOP/s: a minute per 2048^2 matmul. A 256^2 probe tells it first
      # (bfloat16 only: a cold float32 probe once read 2 GFLOP/s).
      p = 256
      probe = 2 * p**3 / _seconds(lambda: tx[:p, :p] @ ty[:p, :p], 3, min) / 1e9
      out[f"torch/{dtype}"] = (
        probe
        if dtype == "bfloat16" and probe < 5.0
        else (2 * n**3 / _seconds(lambda: tx @ ty, repeats, min) / 1e9)
      )
  return out


def _steps_for(seconds: float, one_step: float) -> int:
  return max(1, int(round(seconds / max(one_step, 1e-6))))


def time_size(size: str, torch, repeats: int, seconds: float, dtype: str) -> dict:
  """Median train-step seconds of cmjax and (if `torch`) the reference at `size`."""
  config = throughput_sizes.config_for(size, dtype=dtype)
  batch = throughput_sizes.random_batch(config)
  jax_step = step_timing.CompiledStep(config, batch)
  # The same step at one step per compiled call, to show what steps_per_call buys.
  config_k1 = throughput_sizes.config_for(size, dtype=dtype)
  config_k1.steps_per_call = 1
  jax_k1 = step_timing.CompiledStep(config_k1, batch)
  row = {
    "size": size,
    "batch_size": config.batch_size,
    "params": sum(int(np.size(p)) for p in jax.tree.leaves(jax_step.state.params)),
    "flops_analytic": throughput_sizes.model_flops_per_step(config),
    "flops_xla": perf.compiled_flops(jax_step.compiled()),
  }
  k = jax_step.steps_per_call

  def whole_calls(n):  # cmjax runs whole calls only: n rounded up to a multiple of k
    return -(-n // k) * k

  runners = {"cmjax": lambda n: jax_step.run(whole_calls(n)), "cmjax_1_per_call": jax_k1.run}
  steps_of_one_run = {"cmjax": whole_calls(1)}  # steps that `run(1)` really takes
  if torch is not None:
    from benchmarks import torch_reference  # pylint: disable=g-import-not-at-top

    params = jax.tree.map(np.asarray, jax_step.state.params)
    model = torch_reference.from_flax(torch_reference.build(config), params)
    lrs = torch_reference.schedule_values(jax_step.schedule, 1000)
    torch_step = torch_reference.TrainStep(model, config.optim, lambda i: lrs[i % len(lrs)])
    torch_batch = torch_reference.to_torch_batch(batch)

    def run_torch(n):
      for _ in range(n):
        torch_step(torch_batch)

    runners["torch"] = run_torch

  steps = {}
  for name, run in runners.items():  # warm-up, and how many steps fill `seconds`
    run(1)
    t = time.perf_counter()
    run(1)
    one_step = (time.perf_counter() - t) / steps_of_one_run.get(name, 1)
    steps[name] = _steps_for(seconds, one_step)
  steps["cmjax"] = whole_calls(steps["cmjax"])
  row["steps_per_call"] = k
  times = {name: [] for name in runners}
  for r in range(repeats):
    for name, run in runners.items():
      t = time.perf_counter()
      run(steps[name])
      times[name].append((time.perf_counter() - t) / steps[name])
    print(
      f"  {size} round {r + 1}/{repeats}: "
      + ", ".join(f"{n} {1e3 * ts[-1]:.1f} ms/step" for n, ts in times.items()),
      flush=True,
    )
  for name, ts in times.items():
    row[f"{name}/step_s"] = statistics.median(ts)
    row[f"{name}/step_s_all"] = ts
  if torch is not None:
    # Each round's two timings are neighbours in time: their ratio cancels the
    # machine's slow drifts, which the ratio of the two medians does not.
    row["speed_ratio_paired"] = statistics.median(
      t / j for t, j in zip(times["torch"], times["cmjax"])
    )
  return row


def pipeline_against_step() -> dict:
  """Examples/s of the default experiment's input pipeline and of its train step."""
  from benchmarks import pipeline_vs_step  # pylint: disable=g-import-not-at-top

  config = shapes_contrastive.get_config()
  step_rate = step_timing.CompiledStep(config).run(10)
  data_rate = pipeline_vs_step.pipeline_rate(config, config.data.num_workers, 40)
  return {
    "train_step_examples_per_s": step_rate,
    "pipeline_examples_per_s": data_rate,
    "num_workers": config.data.num_workers,
  }


def _fmt(x, spec):
  return "—" if x is None else format(x, spec)


def main(argv):
  del argv
  # First, before JAX or PyTorch start threads (see cmjax/host_memory.py).
  kept = FLAGS.keep_freed_host_memory and host_memory.keep_freed_memory()
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    torch = None
    print("PyTorch is not installed (pip install -e '.[bench]'): cmjax columns only.")
  if not FLAGS.torch:
    torch = None
  results = {
    "device": str(jax.devices()[0].device_kind),
    "jax": jax.__version__,
    "torch": torch.__version__ if torch else None,
    "keep_freed_host_memory": kept,
    "threads": {"cpu_count": os.cpu_count(), "torch": torch.get_num_threads() if torch else None},
  }

  # Measured before and after the models, keeping the faster of the two.
  before = matmul_peak(FLAGS.matmul_size, torch)
  rows = []
  for size in FLAGS.sizes:
    print(f"\nTiming {size} ...", flush=True)
    rows.append(time_size(size, torch, FLAGS.repeats, FLAGS.seconds, FLAGS.dtype))
  results["sizes"] = rows
  after = matmul_peak(FLAGS.matmul_size, torch)
  peak = {k: max(before[k], after[k]) for k in before}
  results["matmul_gflops"] = peak
  results["matmul_gflops_before_after"] = {"before": before, "after": after}
  print(
    f"\nMatmul peak ({FLAGS.matmul_size}x{FLAGS.matmul_size}, GFLOP/s, fastest of 5, "
    "before and after the models)"
  )
  print("| framework | float32 | bfloat16 |\n|---|---|---|")
  for fw in ("jax", "torch"):
    if f"{fw}/float32" in peak:
      print(f"| {fw} | {peak[f'{fw}/float32']:.0f} | {peak[f'{fw}/bfloat16']:.0f} |")
  f32_peak = max(v for k, v in peak.items() if k.endswith(FLAGS.dtype))
  results["mfu_denominator_gflops"] = f32_peak

  print(
    f"\nTrain step, {FLAGS.dtype}, median of {FLAGS.repeats} alternating rounds; "
    f"MFU against {f32_peak:.0f} GFLOP/s (best {FLAGS.dtype} matmul above)"
  )
  print(
    "| size | params | batch | GFLOP/step (analytic / XLA) | cmjax ex/s (steps/call) "
    "| cmjax ex/s, 1 step/call | PyTorch ex/s | cmjax / PyTorch (of medians; paired) "
    "| cmjax MFU | PyTorch MFU |"
  )
  print("|---|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    b, flops = r["batch_size"], r["flops_analytic"]
    jt, j1, tt = r["cmjax/step_s"], r["cmjax_1_per_call/step_s"], r.get("torch/step_s")
    print(
      f"| {r['size']} | {r['params'] / 1e6:.2f} M | {b} | {flops / 1e9:.2f} / "
      f"{_fmt(r['flops_xla'] and r['flops_xla'] / 1e9, '.2f')} | {b / jt:.1f} "
      f"({r['steps_per_call']}) | {b / j1:.1f} | {_fmt(tt and b / tt, '.1f')} | "
      f"{_fmt(tt and tt / jt, '.2f')}x; {_fmt(r.get('speed_ratio_paired'), '.2f')}x | "
      f"{100 * flops / jt / 1e9 / f32_peak:.0f}% | "
      f"{_fmt(tt and 100 * flops / tt / 1e9 / f32_peak, '.0f')}% |"
    )

  if FLAGS.pipeline:
    print("\nTiming the default experiment's input pipeline ...", flush=True)
    p = pipeline_against_step()
    results["pipeline"] = p
    ratio = p["pipeline_examples_per_s"] / p["train_step_examples_per_s"]
    print("| default experiment | examples/s |\n|---|---|")
    print(f"| train step consumes | {p['train_step_examples_per_s']:.0f} |")
    print(
      f"| input pipeline delivers ({p['num_workers']} workers) | "
      f"{p['pipeline_examples_per_s']:.0f} ({ratio:.1f}x the step) |"
    )

  if FLAGS.out:
    with open(FLAGS.out, "w") as f:
      json.dump(results, f, indent=1)
    print(f"\nWrote {FLAGS.out}")


if __name__ == "__main__":
  app.run(main)
