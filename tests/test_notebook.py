"""The tutorial notebook runs top to bottom on small settings and learns something real."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "examples" / "tutorial.ipynb"
KERNEL = "mtrs-test-python"


def _ml_dir() -> Path:
    env = os.environ.get("MTRS_ML100K_DIR")
    return Path(env) if env else REPO.parent / "shared" / "datasets" / "ml-100k"


@pytest.fixture
def kernel_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernelspec that runs this interpreter, found first on ``JUPYTER_PATH``.

    The test must not depend on whatever ``python3`` kernel a user or the system has
    installed: that kernel could run another Python without mtrs.
    """
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "mtrs test", "language": "python"})
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return KERNEL


def _text(cell: nbformat.NotebookNode) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif "data" in out:
            parts.append(out["data"].get("text/plain", ""))
    return "".join(parts)


def test_tutorial_notebook_runs(kernel_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ml_dir = _ml_dir()
    assert (ml_dir / "u.data").is_file(), f"MovieLens-100K not found at {ml_dir}"
    monkeypatch.setenv("MTRS_ML100K_DIR", str(ml_dir))
    # The kernel inherits this: two OpenMP threads on two cores shared with other test
    # processes spin and crawl.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
        "commit the notebook with outputs cleared"
    )
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    # The tutorial shows the public API only: ``import mtrs``, nothing from the internals.
    assert "import mtrs" in code and not re.search(r"(from|import) mtrs\.", code)
    client = NotebookClient(
        nb, kernel_name=kernel_path, timeout=300, resources={"metadata": {"path": str(REPO)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell

    text = "\n".join(_text(c) for c in nb.cells if c.cell_type == "code")
    click = re.search(r"click AUC: ([0-9.]+) \(oracle ([0-9.]+)\)", text)
    assert click, text
    assert float(click.group(1)) > 0.6
    assert float(click.group(1)) <= float(click.group(2)) + 0.02
    assert "merged: click·purchase²" in text
    assert "predicted: {'gender':" in text
    movielens = re.search(r"interact AUC: ([0-9.]+)", text)
    assert movielens, text
    assert float(movielens.group(1)) > 0.6
    assert "hit_rate@10" in text
