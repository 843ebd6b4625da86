r"""What verifying checkpoints costs: the checksums of one save, against the save
itself and against a train step, at the default experiment's size and at base.

  python benchmarks/checkpoint_checksums.py \
      --out=benchmarks/results/checkpoint_checksums_cpu.json

Per size, on the same state, `--repeats` times each (medians reported):
  step       one compiled train step (the trainer's own, `step_timing.CompiledStep`)
  save       `Checkpointer.save` with checksums off, until Orbax has committed
  on_thread  what the checksums add to the training thread at a save: dispatching
             the jitted fingerprint pass over the state (`array_summary`)
  fingerprint  that pass computed (device time; it overlaps the next steps)
  files      CRC-32 of the step's files and the manifest written (a background
             thread, after the commit)
The checksum cost is `fingerprint + files`; the training thread waits only for
`on_thread`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import grain  # noqa: E402
import jax  # noqa: E402

from benchmarks import step_timing, throughput_sizes  # noqa: E402
from cmjax import checkpoint  # noqa: E402
from cmjax import checkpoint_integrity as integrity  # noqa: E402
from configs import shapes_contrastive  # noqa: E402


def _config(size: str):
  if size == "default":
    return shapes_contrastive.get_config()
  return throughput_sizes.config_for(size)


def _median_time(fn, repeats: int) -> float:
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return statistics.median(times)


def measure(size: str, repeats: int) -> dict:
  config = _config(size)
  step = step_timing.CompiledStep(config)
  step_s = _median_time(lambda: step.run(1), repeats)
  state = step.state
  # A stand-in iterator: the data item is a few bytes of JSON at any size.
  data_iter = iter(grain.MapDataset.range(10).to_iter_dataset())
  with tempfile.TemporaryDirectory() as tmp:
    ckpt = checkpoint.Checkpointer(tmp, every_steps=1, keep=1000)
    # The save alone: Orbax's, until committed (checksums bypassed).
    counter = iter(range(1, 10**6))

    def orbax_save():
      n = next(counter)
      items = dict(
        state=checkpoint.ocp.args.StandardSave(state),
        data=grain.checkpoint.CheckpointSave(data_iter),
      )
      ckpt.manager.save(n, args=checkpoint.ocp.args.Composite(**items), force=True)
      ckpt.manager.wait_until_finished()
      return n

    save_s = _median_time(orbax_save, repeats)
    on_thread_s = _median_time(lambda: integrity.array_summary(state), repeats)
    fingerprint_s = _median_time(
      lambda: integrity.fetch_summary(integrity.array_summary(state)), repeats
    )
    summary = integrity.fetch_summary(integrity.array_summary(state))
    step_dir = os.path.join(tmp, "checkpoints", str(orbax_save()))
    files_s = _median_time(lambda: integrity.write_manifest(step_dir, summary), repeats)
    size_bytes = sum(v[0] for v in integrity.file_checksums(step_dir).values())
    ckpt.close()
  cost = fingerprint_s + files_s
  num_params = sum(x.size for x in jax.tree_util.tree_leaves(state.params))
  return {
    "size": size,
    "num_params": int(num_params),
    "checkpoint_bytes": int(size_bytes),
    "step_s": step_s,
    "save_s": save_s,
    "on_thread_s": on_thread_s,
    "fingerprint_s": fingerprint_s,
    "files_s": files_s,
    "checksum_over_save": cost / save_s,
    "checksum_over_step": cost / step_s,
    "on_thread_over_step": on_thread_s / step_s,
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--sizes", default="default,base")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--out", default=None)
  args = parser.parse_args()
  rows = []
  for size in args.sizes.split(","):
    row = measure(size, args.repeats)
    rows.append(row)
    print(
      f"{size}: {row['num_params'] / 1e6:.1f}M params, {row['checkpoint_bytes'] / 1e6:.0f} MB; "
      f"step {row['step_s'] * 1e3:.0f} ms, save {row['save_s'] * 1e3:.0f} ms; checksums "
      f"{(row['fingerprint_s'] + row['files_s']) * 1e3:.0f} ms = "
      f"{row['checksum_over_save']:.1%} of the save, {row['checksum_over_step']:.1%} of a "
      f"step; on the training thread {row['on_thread_s'] * 1e3:.2f} ms",
      flush=True,
    )
  if args.out:
    payload = {"device": str(jax.devices()[0].device_kind), "rows": rows}
    with open(args.out, "w") as f:
      json.dump(payload, f, indent=1)


if __name__ == "__main__":
  main()
