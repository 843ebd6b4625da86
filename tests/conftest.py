"""Test-wide settings: CPU only, and a dataset cache private to this test session."""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Generated splits are cached on disk; tests share one throwaway cache folder
# (inherited by the train.py subprocesses they start), removed when pytest exits.
if "CMJAX_CACHE_DIR" not in os.environ:
  os.environ["CMJAX_CACHE_DIR"] = tempfile.mkdtemp(prefix="cmjax-test-cache-")
  atexit.register(shutil.rmtree, os.environ["CMJAX_CACHE_DIR"], ignore_errors=True)
