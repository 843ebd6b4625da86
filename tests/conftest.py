"""Test-wide settings: CPU only, freed host memory kept for reuse, and a dataset cache
private to this test session."""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")

# As train.py does: XLA:CPU's per-call temporaries reuse freed host memory
# instead of faulting in fresh pages on every call (cmjax/host_memory.py).
# It must run before the first JAX computation, which no test has done yet.
from cmjax import host_memory  # pylint: disable=g-import-not-at-top  # noqa: E402

host_memory.keep_freed_memory()

# Compiled executables are cached on disk for the test session: the suite
# compiles the same tiny train steps and evaluators again and again (train.py
# subprocesses, resumed runs, one model per test). A folder of its own, like the
# dataset cache below, inherited by the subprocesses and removed at exit.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="cmjax-test-xla-cache-")
  atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
  # Every executable, not only those that took over a second to compile.
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

# Generated splits are cached on disk; tests share one throwaway cache folder
# (inherited by the train.py subprocesses they start), removed when pytest exits.
if "CMJAX_CACHE_DIR" not in os.environ:
  os.environ["CMJAX_CACHE_DIR"] = tempfile.mkdtemp(prefix="cmjax-test-cache-")
  atexit.register(shutil.rmtree, os.environ["CMJAX_CACHE_DIR"], ignore_errors=True)
