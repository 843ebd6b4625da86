"""host_memory.keep_freed_memory: XLA:CPU's per-call temporaries stop faulting in pages."""

import platform
import subprocess
import sys

import pytest

from tests import helpers

# A jitted function whose 128 MB intermediate (a dot's output, read by a second
# dot) is an XLA temporary; prints the median page faults of one call in the
# steady state. The first calls are left out: while XLA's worker threads' own
# small blocks still split the freed region, a call can find no free block
# large enough and grow the heap instead (measured: the first ~10 of 30 calls
# faulted 32k pages in about half of them, every call after that 0).
_PROBE = r"""
import resource, statistics, sys
if sys.argv[1] == "keep":
  from cmjax import host_memory
  assert host_memory.keep_freed_memory()
import jax, jax.numpy as jnp
x, w = jnp.ones((65536, 8)), jnp.ones((8, 512))
f = jax.jit(lambda x, w: jnp.tanh(x @ w) @ w[0])
assert f.lower(x, w).compile().memory_analysis().temp_size_in_bytes >= 2**27
faults = []
for _ in range(24):
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  f(x, w).block_until_ready()
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(statistics.median(faults[12:]))
"""


def _median_faults(mode: str) -> float:
  proc = subprocess.run(
    [sys.executable, "-c", _PROBE, mode],
    capture_output=True,
    text=True,
    cwd=helpers.ROOT,
    env=helpers.subprocess_env(),
    timeout=300,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  return float(proc.stdout.split()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_temporaries_reuse_freed_pages():
  default = _median_faults("default")
  if default < 2**27 / 4096 / 2:
    pytest.skip(f"this JAX does not map fresh pages per call ({default} faults)")
  kept = _median_faults("keep")
  # 128 MB is 32k pages of 4 KiB: faulted in on every call, or reused.
  assert kept < 0.1 * default, (kept, default)


def test_refuses_once_jax_runs():
  import jax.numpy as jnp

  from cmjax import host_memory

  jnp.ones(1).block_until_ready()  # the backend (and its threads) now exist
  assert host_memory.keep_freed_memory() is False
