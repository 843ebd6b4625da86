"""Host memory: let the C allocator keep freed memory for the next step.

Why: XLA:CPU allocates every execution's temporaries as one buffer (about
0.5 GB for the default experiment's train step) from a worker thread. glibc's
malloc serves an allocation that large from a worker thread's arena with a
fresh `mmap` and unmaps it on free, so each call faults in every page again,
and the kernel zeroes each one: ~123k page faults and ~0.3 s of system time per
train step of the small benchmark model on a 2-core CPU, a third of the step.
With one arena, no `mmap` for large blocks and no trimming, the freed buffer
stays in the heap and the next call reuses it: zero faults per step once the
heap has grown to fit (the first few calls may still extend it while other
threads' small blocks split the freed region).

The cost: the process keeps its peak heap (it never returns freed memory to
the system), and all threads share one arena's lock, which a train loop whose
threads mostly wait on XLA does not feel.

It has to run before JAX starts its thread pools (before the first
computation, `jax.devices()` included): a thread that has already allocated
keeps its own arena. `train.py` calls it first thing; in a notebook, call it
in the first cell. Elsewhere than glibc (macOS, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

# mallopt(3) parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8


def _backends_initialized() -> bool:
  try:
    from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top

    return bool(xla_bridge.backends_are_initialized())
  except (ImportError, AttributeError):  # a JAX without it: assume not
    return False


def keep_freed_memory() -> bool:
  """Makes glibc's malloc reuse freed memory instead of unmapping it.

  Returns:
    True if the settings took; False where the C library is not glibc, or
    where JAX's backends already run (then the call changes nothing, as
    JAX's threads already have their own arenas).
  """
  if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
    return False
  if _backends_initialized():
    return False
  libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
  # mallopt returns 1 on success. Arena first: threads that allocate later
  # all share the main arena, whose large blocks come from the heap.
  return all(
    libc.mallopt(param, value) == 1
    for param, value in (
      (_M_ARENA_MAX, 1),
      (_M_MMAP_MAX, 0),  # never mmap a block: every block comes from the heap
      (_M_TRIM_THRESHOLD, -1),  # never give the heap's top back to the system
    )
  )
