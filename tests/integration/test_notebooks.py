"""The notebooks execute headless on a small subset with the real local server."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.integration

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


def test_notebooks_exist_and_are_stripped() -> None:
    assert [p.name for p in NOTEBOOKS] == ["01_quickstart.ipynb", "02_cost_quality.ipynb", "03_other_methods.ipynb"]
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: outputs not stripped"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, local_cascade: object) -> None:
    # local_cascade keeps a server running that the notebook's kernel reuses
    monkeypatch.setenv("SEMCASCADE_NB_N", "4")
    monkeypatch.setenv("SEMCASCADE_NB_OUT", str(tmp_path))
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    texts = "".join(
        o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
    )
    if path.name.startswith("01"):
        # the context question is answered (Marie Curie was born in Warsaw), bad input is a typed error
        assert "warsaw" in texts.lower() and "EmptyPromptError" in texts
    elif path.name.startswith("02"):
        assert "oracle" in texts and (tmp_path / "halueval_qa" / "frontier.png").exists()
    else:
        # thresholds with held-out figures, the envelope's switching points, routed answers, a learned strategy
        assert "held-out test (n=500)" in texts and "switching points" in texts
        assert (tmp_path / "envelope.png").exists() and "-> qwen-" in texts
        assert "learned strategy #1" in texts and "P(IK) router" in texts
