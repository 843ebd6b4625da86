"""Test-wide settings: CPU only, and a dataset cache private to this test session."""

import os
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Generated splits are cached on disk; tests share one throwaway cache folder
# (inherited by the train.py subprocesses they start).
os.environ.setdefault("CMJAX_CACHE_DIR", tempfile.mkdtemp(prefix="cmjax-test-cache-"))
