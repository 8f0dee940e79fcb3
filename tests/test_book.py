"""The book pipeline: every chapter executed at smoke scale through the same papermill path as
`make book`, the HTML built with warnings as errors, and the failure modes reported.  The
whole-book tests are slow (`make check`); how long each chapter took is in its provenance,
never asserted (a busy machine would fail a timing test for the wrong reason)."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest

from hessnoise import book
from hessnoise.report import repo_root

ROOT = repo_root(Path(__file__).parent)
HEADER = textwrap.dedent(
    """\
    ---
    jupytext:
      text_representation:
        extension: .md
        format_name: myst
    kernelspec:
      display_name: Python 3
      language: python
      name: python3
    ---
    """
)
PARAMS = textwrap.dedent(
    """\
    ```{code-cell} ipython3
    :tags: [parameters]

    scale = "small"
    device = "auto"
    seed = 0
    results_dir = None
    ```
    """
)


@pytest.fixture(scope="module")
def smoke_book(tmp_path_factory):
    """The whole book at smoke scale (slow: every chapter runs)."""
    build_dir = tmp_path_factory.mktemp("book") / "_build"
    runs = book.build("smoke", "cpu", build_dir=build_dir, log=lambda *_: None)
    return build_dir, runs


@pytest.mark.slow
def test_every_toc_page_runs_at_smoke_scale(smoke_book):
    _, runs = smoke_book
    names = [Path(p).name for p in book.toc_files(ROOT)]
    assert sorted(r.name for r in runs) == sorted(names)
    assert runs[-1].name == Path(book.toc_files(ROOT)[0]).name  # the claims page runs last


@pytest.mark.slow
def test_results_files_follow_the_schema(smoke_book):
    _, runs = smoke_book
    for r in runs:
        data = json.loads(r.results.read_text())
        assert data["chapter"] == r.name and data["scale"] == "smoke" and data["device"] == "cpu"
        assert data["checks"], f"{r.name} asserts no checks"
        for c in data["checks"]:
            assert set(c) == {"name", "value", "target", "passed", "kind"} and c["passed"]
            assert c["kind"] in ("test", "consistency")
        assert isinstance(data["metrics"], dict)
        assert data["provenance"]["wall_time_s"] > 0


@pytest.mark.slow
def test_html_has_every_page_and_no_error_output(smoke_book):
    build_dir, runs = smoke_book
    html = build_dir / "html"
    for r in runs:
        page = (html / "book" / f"{r.name}.html").read_text()
        assert "Traceback" not in page and "output traceback" not in page
        assert "Provenance" in page
        assert "tag_parameters" not in page and "tag_injected-parameters" not in page
    assert (html / "index.html").exists()


def test_no_notebook_is_committed_and_none_sits_beside_its_md():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout
    assert not [f for f in tracked.splitlines() if f.endswith(".ipynb")]
    assert not list((ROOT / "book").glob("*.ipynb"))


def fake_book(tmp_path: Path, body: str) -> Path:
    (tmp_path / "book").mkdir()
    (tmp_path / "_config.yml").write_text((ROOT / "_config.yml").read_text())
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nchapters:\n  - file: book/bad\n"
    )
    (tmp_path / "book" / "references.bib").write_text(
        (ROOT / "book" / "references.bib").read_text()
    )
    (tmp_path / "book" / "intro.md").write_text(HEADER + "# Intro\n\n" + PARAMS)
    (tmp_path / "book" / "bad.md").write_text(HEADER + "# Bad\n\n" + body)
    return tmp_path


def test_a_failing_cell_names_the_chapter_and_shows_the_traceback(tmp_path):
    cell = "def inner():\n    raise ZeroDivisionError('boom here')\ninner()"
    body = PARAMS + f"\n```{{code-cell}} ipython3\n{cell}\n```\n"
    root = fake_book(tmp_path, body)
    with pytest.raises(book.BookError) as err:
        book.build("smoke", "cpu", root=root, html=False, log=lambda *_: None)
    msg = str(err.value)
    assert "chapter 'bad'" in msg and "ZeroDivisionError" in msg and "boom here" in msg
    assert "inner()" in msg  # the traceback, not just the message


def test_a_failed_check_fails_the_build(tmp_path):
    body = PARAMS + textwrap.dedent(
        """
        ```{code-cell} ipython3
        from hessnoise.report import Chapter
        run = Chapter("bad", scale, device, seed, results_dir)
        run.check_below("error", 0.5, 0.01)
        ```
        """
    )
    root = fake_book(tmp_path, body)
    with pytest.raises(book.BookError, match=r"(?s)chapter 'bad'.*CheckFailed.*'error'"):
        book.build("smoke", "cpu", root=root, html=False, log=lambda *_: None)


def test_a_chapter_without_parameters_cell_is_refused(tmp_path):
    root = fake_book(tmp_path, "```{code-cell} ipython3\nx = 1\n```\n")
    with pytest.raises(book.BookError, match="no code cell is tagged 'parameters'"):
        book.build("smoke", "cpu", root=root, html=False, log=lambda *_: None)


def test_bad_scale_or_device_is_refused_before_any_chapter_runs(tmp_path):
    with pytest.raises(ValueError, match="scale='medium'"):
        book.build("medium", "cpu", build_dir=tmp_path)
    with pytest.raises(ValueError, match="device='gpu'"):
        book.build("smoke", "gpu", build_dir=tmp_path)
    assert not list(tmp_path.iterdir())


def test_cli_reports_failure_with_exit_code(tmp_path):
    assert book.main(["--scale", "nope", "--build-dir", str(tmp_path)]) == 1
