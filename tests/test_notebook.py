"""colabs/quickstart.ipynb runs top to bottom (tiny settings)."""

import os

import nbformat
from nbclient import NotebookClient

from tests import helpers


def test_quickstart_notebook_executes(monkeypatch):
  monkeypatch.setenv("CMJAX_NOTEBOOK_TINY", "1")
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  path = os.path.join(helpers.ROOT, "colabs", "quickstart.ipynb")
  nb = nbformat.read(path, as_version=4)
  NotebookClient(
    nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": os.path.dirname(path)}}
  ).execute()
  outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
  assert not [o for o in outputs if o.get("output_type") == "error"]
  images = [o for o in outputs if "image/png" in o.get("data", {})]
  assert len(images) >= 2, "expected the loss plot and the retrieval grid"
