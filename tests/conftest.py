"""Test-wide settings: CPU only, unoptimised machine code, freed host memory kept
for reuse, and a compilation cache and a dataset cache private to this session."""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")

# Tests compile many tiny programs and run each only a few times, so LLVM's
# optimisation passes dominate: without them the tiny 8-device train step
# compiles in a third of the time and the end-to-end runs take a third to a
# half as long (measured on 2 cores). The programs compute the
# same functions; only their machine code is less optimised. Subprocesses
# inherit it; CMJAX_TEST_XLA_OPT=1 keeps XLA's default instead.
if os.environ.get("CMJAX_TEST_XLA_OPT") != "1" and "xla_backend_optimization_level" not in (
  os.environ.get("XLA_FLAGS", "")
):
  os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
  ).strip()

# As train.py does: XLA:CPU's per-call temporaries reuse freed host memory
# instead of faulting in fresh pages on every call (cmjax/host_memory.py).
# It must run before the first JAX computation, which no test has done yet.
from cmjax import host_memory  # pylint: disable=g-import-not-at-top  # noqa: E402

host_memory.keep_freed_memory()


def _session_folder(env_var: str, prefix: str) -> bool:
  """Points `env_var` at a fresh temp folder removed at exit, unless it is set;
  subprocesses (train.py runs) inherit it. Returns whether it made one."""
  if env_var in os.environ:
    return False
  os.environ[env_var] = tempfile.mkdtemp(prefix=prefix)
  atexit.register(shutil.rmtree, os.environ[env_var], ignore_errors=True)
  return True


# Compiled executables are cached on disk for the test session: the suite
# compiles the same tiny train steps and evaluators again and again (train.py
# subprocesses, resumed runs, one model per test).
if _session_folder("JAX_COMPILATION_CACHE_DIR", "cmjax-test-xla-cache-"):
  # Every executable, not only those that took over a second to compile.
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

# Generated splits are cached on disk; tests share one throwaway cache folder.
_session_folder("CMJAX_CACHE_DIR", "cmjax-test-cache-")
