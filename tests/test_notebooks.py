"""The notebooks run top to bottom (in fast mode, SIM_FAST=1) and are committed without outputs.

Executed with nbclient (what nbmake uses) in a fresh kernel started from this interpreter, with
the notebook's folder as working directory — as a user opening it in Jupyter would.
"""

from pathlib import Path

import nbformat
import pytest

from tests.support import ROOT

pytestmark = pytest.mark.slow

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_the_issue_notebooks_exist():
    assert {p.name for p in NOTEBOOKS} >= {"what-if.ipynb", "sizing.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path: Path):
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"{path.name}: strip outputs"
            )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_runs_in_fast_mode(path: Path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("SIM_FAST", "1")
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails
    source = "\n".join(c.source for c in notebook.cells if c.cell_type == "code")
    assert "import sim" in source and "from sim." not in source and "import sim." not in source
    images = [
        o
        for c in notebook.cells
        if c.cell_type == "code"
        for o in c.outputs
        if "image/png" in o.get("data", {})
    ]
    assert images, "the notebook should draw its plots"
