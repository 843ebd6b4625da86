"""The notebooks under colabs/ run top to bottom (tiny settings)."""

import os

import nbformat
from nbclient import NotebookClient

from tests import helpers


def _execute(name: str, monkeypatch) -> list:
  """Runs colabs/<name> with tiny settings; returns its code cells' outputs."""
  monkeypatch.setenv("CMJAX_NOTEBOOK_TINY", "1")
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  path = os.path.join(helpers.ROOT, "colabs", name)
  nb = nbformat.read(path, as_version=4)
  NotebookClient(
    nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": os.path.dirname(path)}}
  ).execute()
  outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
  assert not [o for o in outputs if o.get("output_type") == "error"]
  return outputs


def _images(outputs) -> list:
  return [o for o in outputs if "image/png" in o.get("data", {})]


def test_quickstart_notebook_executes(monkeypatch):
  outputs = _execute("quickstart.ipynb", monkeypatch)
  assert len(_images(outputs)) >= 2, "expected the loss plot and the retrieval grid"


def test_own_data_notebook_executes(monkeypatch):
  outputs = _execute("own_data.ipynb", monkeypatch)
  assert len(_images(outputs)) >= 2, "expected the example pictures and the search results"
  text = "".join(
    str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) for o in outputs
  )
  assert "rows in" in text and "R@5" in text


def test_pretrained_notebook_executes(monkeypatch, tmp_path):
  monkeypatch.setenv("CMJAX_CACHE", str(tmp_path))
  outputs = _execute("pretrained.ipynb", monkeypatch)
  assert len(_images(outputs)) >= 1, "expected the images with their closest captions"
  text = "".join(
    str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) for o in outputs
  )
  assert "format: open_clip" in text and "<- " in text and "zeroshot/shape_accuracy" in text


def test_generation_notebook_executes(monkeypatch):
  outputs = _execute("generation.ipynb", monkeypatch)
  assert len(_images(outputs)) >= 2, "expected the captioned scenes and the reconstructions"
  text = "".join(
    str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) for o in outputs
  )
  assert "->" in text and "said:" in text and "beam search:" in text


def test_vqa_notebook_executes(monkeypatch):
  outputs = _execute("vqa.ipynb", monkeypatch)
  assert len(_images(outputs)) >= 3, "expected held-out, own and spoken questions with their maps"
  text = "".join(
    str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) for o in outputs
  )
  assert "spoken 'what color is the square'" in text
