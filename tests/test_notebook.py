"""The example notebook executes from top to bottom (nbclient), so it cannot rot: the study runs,
the table shows as HTML, the heatmap and the image comparison show as images."""

from __future__ import annotations

from pathlib import Path

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

NOTEBOOK = Path(__file__).parents[1] / "examples" / "quickstart.ipynb"

pytestmark = pytest.mark.slow


def test_the_quickstart_notebook_runs(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on any error

    code = [c for c in nb.cells if c.cell_type == "code"]

    def kinds(cell) -> set[str]:
        return {k for out in cell.outputs for k in out.get("data", {})}

    def cell_with(text: str):
        (cell,) = [c for c in code if text in c.source]
        return cell

    assert "text/html" in kinds(cell_with('ablang.inspect("tiny")'))
    ran = kinds(cell_with("results = study.run("))
    assert "text/html" in ran
    # rich found Jupyter: the progress bars were a live widget, not text for a terminal
    assert "application/vnd.jupyter.widget-view+json" in ran
    assert "text/html" in kinds(cell_with("sort_values"))
    assert "image/png" in kinds(cell_with('results.heatmap("sweep1")'))
    assert "image/png" in kinds(cell_with("make_grid"))
    assert (tmp_path / "runs" / "notebook_quickstart" / "results.json").exists()
    printed = "".join(out.get("text", "") for out in cell_with("except ablang.StudyError").outputs)
    assert "notebook" not in printed and "<study>:2:6: error: no component `skp[3]`" in printed
