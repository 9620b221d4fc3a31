"""``notebooks/explore.ipynb`` runs top to bottom on the demo's outputs (nbclient, a real IPython kernel)."""

from __future__ import annotations

import os

import nbformat
from nbclient import NotebookClient
from tests_support import REPO


def test_explore_notebook_runs_on_the_demo(demo_run, monkeypatch):
    root, _ = demo_run
    monkeypatch.setenv("MFRS_DATA_ROOT", str(root))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    nb = nbformat.read(REPO / "notebooks" / "explore.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "\n".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "FFA: r = " in text and "time x layer" in text  # the p_fwe family, as the stage records it
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 4
