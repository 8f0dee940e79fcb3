"""The book pipeline: every chapter executed at smoke scale through the same papermill path as
`make book`, the HTML built with warnings as errors, and the failure modes reported.  The
whole-book tests are slow (`make check`); how long each chapter took is in its provenance,
never asserted (a busy machine would fail a timing test for the wrong reason)."""

from __future__ import annotations

import json
import re
import subprocess
import textwrap
from pathlib import Path

import pytest

from hessnoise import book
from hessnoise.book import sources
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


# `smoke_book` (tests/conftest.py): the whole book at smoke scale, built once per session.


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


# -- the cache, one chapter at a time, and the data check -------------------------------------


def json_chapter(name: str) -> str:
    """A chapter that writes its results file with plain json (a kernel that imports no
    torch starts in seconds) and, like a real chapter's provenance, a time in it; prints a
    progress line and a line for the reader; and lists the results it can see."""
    cell = textwrap.dedent(
        f"""\
        import json, pathlib, time
        out = pathlib.Path(results_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "{name}.json").write_text(json.dumps({{"chapter": "{name}", "scale": scale,
            "checks": [], "metrics": {{}}, "provenance": {{"finished": time.time()}}}}))
        print("[progress] fake " + "sweep finished")
        print("seen:", sorted(p.stem for p in out.glob("*.json")))
        """
    )
    return HEADER + f"# Chapter {name}\n\n" + PARAMS + f"\n```{{code-cell}} ipython3\n{cell}```\n"


def two_chapter_book(tmp_path: Path) -> Path:
    (tmp_path / "book").mkdir(parents=True)
    (tmp_path / "_config.yml").write_text((ROOT / "_config.yml").read_text())
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nchapters:\n  - file: book/a\n  - file: book/b\n"
    )
    (tmp_path / "book" / "references.bib").write_text(
        (ROOT / "book" / "references.bib").read_text()
    )
    for name in ("intro", "a", "b"):
        (tmp_path / "book" / f"{name}.md").write_text(json_chapter(name))
    return tmp_path


def ran(runs) -> list[str]:
    return [r.name for r in runs if not r.skipped]


@pytest.mark.slow
def test_current_chapters_are_skipped_and_changes_rerun_what_they_touch(tmp_path):
    root = two_chapter_book(tmp_path / "src")
    out = tmp_path / "_build"
    kw = dict(root=root, build_dir=out, html=False, log=lambda *_: None)
    assert ran(book.build("smoke", "cpu", **kw)) == ["a", "b", "intro"]
    assert ran(book.build("smoke", "cpu", **kw)) == []  # everything current
    assert (out / "logs" / "smoke" / "a.log").read_text().startswith("[progress] fake sweep fin")
    # a chapter's source changed: it reruns, and so does the claims page (a result changed)
    (root / "book" / "b.md").write_text(json_chapter("b") + "\nA new sentence.\n")
    assert ran(book.build("smoke", "cpu", **kw)) == ["b", "intro"]
    # another seed is another result; FORCE reruns what is current
    assert ran(book.build("smoke", "cpu", seed=1, **kw)) == ["a", "b", "intro"]
    assert ran(book.build("smoke", "cpu", seed=1, force=True, **kw)) == ["a", "b", "intro"]


@pytest.mark.slow
def test_one_chapter_with_the_others_results_and_no_stale_result_read(tmp_path):
    root = two_chapter_book(tmp_path / "src")
    out = tmp_path / "_build"
    kw = dict(root=root, build_dir=out, log=lambda *_: None)
    runs = book.build("smoke", "cpu", chapter="a", **kw)  # b never ran: a placeholder page
    assert ran(runs) == ["a", "intro"] and [r.name for r in runs] == ["a", "intro"]
    html = out / "html" / "book"
    assert "no current results" in (html / "b.html").read_text()
    page_a = (html / "a.html").read_text()
    # the reader's line is in the page, the progress line only in the log
    assert "seen: [" in page_a and "fake sweep finished" not in page_a
    assert {"a.md", "a.ipynb"} <= set(re.findall(r"_sources/book/(a\.\w+)", page_a))
    assert (out / "html" / "_sources" / "book" / "a.md").read_text().startswith("---")
    assert json.loads((out / "html" / "_sources" / "book" / "a.ipynb").read_text())["cells"]
    assert (out / "html" / "_static" / "mathjax" / "tex-mml-chtml.js").exists()
    assert "_static/mathjax/tex-mml-chtml.js" in page_a and "cdn.jsdelivr" not in page_a
    assert ran(book.build("smoke", "cpu", chapter="b", html=False, **kw)) == ["b", "intro"]
    assert ran(book.build("smoke", "cpu", chapter="a", html=False, **kw)) == []
    # b's source changes; running a alone sets b's results aside, and the claims page,
    # which reruns because the results it reads changed, no longer sees them
    (root / "book" / "b.md").write_text(json_chapter("b") + "\nA new sentence.\n")
    runs = book.build("smoke", "cpu", chapter="a", html=False, **kw)
    assert ran(runs) == ["intro"] and [r.name for r in runs] == ["a", "intro"]
    results = out / "results" / "smoke"
    assert not (results / "b.json").exists() and (results / "stale" / "b.json").exists()
    assert "seen: ['a', 'intro']" in (out / "logs" / "smoke" / "intro.log").read_text()
    assert ran(book.build("smoke", "cpu", chapter="a", force=True, html=False, **kw)) == [
        "a",
        "intro",
    ]


def test_the_key_follows_the_package_modules_a_chapter_imports(tmp_path, monkeypatch):
    pkg = tmp_path / "pkg" / "hessnoise"  # a stand-in package with the same name
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from hessnoise import c\n")
    (pkg / "c.py").write_text("X = 1\n")
    (pkg / "d.py").write_text("Y = 1\n")
    # the key's code reads the package directory where it is defined
    monkeypatch.setattr(sources, "PACKAGE_DIR", pkg)
    root = tmp_path / "src"
    (root / "book").mkdir(parents=True)
    chapter = "```{code-cell} ipython3\nimport numpy\nfrom hessnoise import a as A\n```\n"
    (root / "book" / "x.md").write_text(HEADER + "# X\n\n" + PARAMS + chapter)
    mods = book.imported_modules(root / "book" / "x.md")
    assert sorted(mods) == ["hessnoise", "hessnoise.a", "hessnoise.c", "hessnoise.sub",
                            "hessnoise.sub.b"]  # fmt: skip

    def key(**kw):
        args = dict(scale="smoke", device_type="cpu", seed=0, build_dir=tmp_path / "_build")
        return book.chapter_key(root, "book/x", **{**args, **kw})["digest"]

    k0 = key()
    (pkg / "d.py").write_text("Y = 2\n")  # not imported: the key stays
    assert key() == k0
    (pkg / "c.py").write_text("X = 2\n")  # imported inside a function, two modules away
    k1 = key()
    assert k1 != k0
    assert len({k1, key(scale="small"), key(device_type="cuda"), key(seed=1)}) == 4
    # a file that an imported module declares it reads, in the build folder or the sources
    (pkg / "c.py").write_text('X = 2\nBOOK_INPUTS = ("_build/bench/t.json", "book/data/t.json")\n')
    k2 = key()
    (tmp_path / "_build" / "bench").mkdir(parents=True)
    (tmp_path / "_build" / "bench" / "t.json").write_text("{}")
    k3 = key()
    (root / "book" / "data").mkdir()
    (root / "book" / "data" / "t.json").write_text("{}")
    k4 = key()
    assert len({k1, k2, k3, k4}) == 4
    (root / "book" / "data" / "other.json").write_text("{}")  # declared by no imported module
    (pkg / "d.py").write_text('BOOK_INPUTS = ("book/data/other.json",)\n')
    assert key() == k4


def test_a_chapter_that_imports_the_book_package_depends_on_its_submodules(tmp_path):
    """``hessnoise.book`` is a package whose ``__init__`` re-exports its submodules: the key
    of a chapter that imports it (the claims page) hashes every one of them."""
    import hessnoise

    assert sources.PACKAGE_DIR == Path(hessnoise.__file__).resolve().parent
    cell = "from hessnoise.book import toc_files\n"
    root = fake_book(tmp_path, PARAMS + f"\n```{{code-cell}} ipython3\n{cell}```\n")
    mods = book.imported_modules(root / "book" / "bad.md")
    package = sources.PACKAGE_DIR / "book"
    expected = {f"hessnoise.book.{f.stem}": f for f in package.glob("*.py") if f.stem[0] != "_"}
    assert {name: mods.get(name) for name in expected} == expected
    assert mods["hessnoise.book"] == package / "__init__.py"
    assert "hessnoise.book.__main__" not in mods  # nothing imports it


def test_missing_data_stops_the_book_before_any_chapter_runs(tmp_path, monkeypatch):
    from hessnoise import data

    monkeypatch.setattr(data, "DEBIAN_FASHION", tmp_path / "nowhere")
    monkeypatch.setenv("HESSNOISE_DATA", str(tmp_path / "empty"))
    cell = "from hessnoise.experiments import curvature_tour as tour\n"
    (tmp_path / "src").mkdir()
    root = fake_book(tmp_path / "src", PARAMS + f"\n```{{code-cell}} ipython3\n{cell}```\n")
    # the paper-scale tour reads Fashion-MNIST and never downloads it
    assert book.chapter_data(root, "book/bad", "paper") == {"fashion-mnist": False}
    with pytest.raises(book.BookError) as err:
        book.build("paper", "cpu", root=root, build_dir=tmp_path / "_build", html=False)
    msg = str(err.value)
    assert "no chapter was run" in msg and "chapter 'bad' needs fashion-mnist" in msg
    assert "apt-get install dataset-fashion-mnist" in msg  # the loader's own advice
    assert not (tmp_path / "_build" / "executed").exists()


def test_an_unknown_chapter_is_refused(tmp_path):
    root = fake_book(tmp_path, PARAMS)
    with pytest.raises(ValueError, match="chapter='nope'"):
        book.build("smoke", "cpu", root=root, chapter="nope", html=False)
    assert book.main(["--scale", "smoke", "--chapter", "nope", "--build-dir", str(tmp_path)]) == 1
