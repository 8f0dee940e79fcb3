"""A chapter as a reader runs it in JupyterLab with jupytext: the .md opened as a notebook
(jupytext's conversion, with this repository's jupytext.toml), the same ``parameters`` cell
as the book command uses, edited to ``scale = "smoke"``, and every cell run from top to
bottom in a python3 kernel (nbclient), not through the book command and papermill.

Slow: the chapter runs.  One chapter is enough to test the path (the fastest); the book's
intro says that every chapter runs this way, which the whole book at smoke scale, executed
cell by cell in the same kernel, supports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hessnoise.report import repo_root

ROOT = repo_root(Path(__file__).parent)
CHAPTER = "minimal_valley"


@pytest.mark.slow
def test_a_chapter_runs_top_to_bottom_in_jupyter_at_smoke_scale(tmp_path, monkeypatch):
    import jupytext
    import nbclient

    source = ROOT / "book" / f"{CHAPTER}.md"
    config = jupytext.config.load_jupytext_configuration_file(str(ROOT / "jupytext.toml"))
    # the pairing Jupyter uses: the .ipynb under _build/jupyter, never beside the .md
    assert config.default_formats(str(source)) == "book///md:myst,_build/jupyter/book///ipynb"
    nb = jupytext.read(source, config=config)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    assert params[0].source.splitlines() == [
        'scale = "small"',
        'device = "auto"',
        "seed = 0",
        "results_dir = None",
    ]
    params[0].source = params[0].source.replace('scale = "small"', 'scale = "smoke"')

    # results_dir = None: the chapter writes where a reader's would, redirected here
    monkeypatch.setenv("HESSNOISE_RESULTS", str(tmp_path / "results"))
    monkeypatch.delenv("HESSNOISE_PROGRESS", raising=False)  # as in Jupyter: bar or lines
    client = nbclient.NotebookClient(
        nb,
        kernel_name="python3",
        timeout=3600,
        resources={"metadata": {"path": str(source.parent)}},
    )
    client.execute()

    errors, stderr = [], []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                errors.append(f"cell {i}: {out['ename']}: {out['evalue']}")
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                stderr.append(f"cell {i}: {out['text'][:200]}")
    assert not errors and not stderr, errors + stderr
    results = json.loads((tmp_path / "results" / "smoke" / f"{CHAPTER}.json").read_text())
    assert results["checks"] and all(c["passed"] for c in results["checks"])
    assert results["provenance"]["wall_time_s"] > 0  # run.finish() ran: the last cell
