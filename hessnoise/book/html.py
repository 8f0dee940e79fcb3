"""The HTML: the executed notebooks, staged apart from their sources, built with Jupyter Book.

:func:`stage` copies the executed notebooks into a staging tree (never beside their ``.md``),
with MathJax from ``node_modules/mathjax`` (``make`` installs it with ``npm ci``) so that the
formulas render without a network; :func:`build_html` builds the HTML there with Jupyter Book:
execution off, ``--all``, warnings as errors.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from hessnoise import progress
from hessnoise.book.execute import ANSI
from hessnoise.book.sources import PACKAGE_DIR, BookError, ChapterRun

# Files beside the chapters that the HTML build needs.
BOOK_ASSETS = ("references.bib",)
# MathJax 3, as `npm ci` installs it (package.json pins the version), and the parts of it the
# HTML needs: the combined TeX/MathML → CommonHTML component (Sphinx's default), the TeX
# extensions it loads on demand, the CommonHTML fonts, and the menu's accessibility parts.
MATHJAX_PARTS = ("tex-mml-chtml.js", "input", "output/chtml", "a11y", "ui", "sre", "adaptors")


def mathjax_dir(root: Path) -> Path:
    """MathJax's ``es5`` folder as ``npm ci`` installs it, beside the book or this package."""
    for base in (root, PACKAGE_DIR.parent):
        candidate = base / "node_modules" / "mathjax" / "es5"
        if (candidate / MATHJAX_PARTS[0]).is_file():
            return candidate
    raise BookError(
        "MathJax is not installed, and the HTML would need a network to show formulas: run "
        "`make vendor` (it runs `npm ci`, which installs the version package.json pins into "
        "node_modules/)"
    )


def _title(source: Path) -> str:
    for line in source.read_text().splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return source.stem


def _placeholder(source: Path, scale: str) -> object:
    """A page for a chapter with no current results in this build."""
    import nbformat

    name = source.stem
    text = (
        f"# {_title(source)}\n\n:::{{note}}\nThis chapter has no current results at scale "
        f"`{scale}` in this build of the book. Run it with `make book CHAPTER={name} "
        f"SCALE={scale}`.\n:::\n"
    )
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(text)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    return nb


def _without_progress(cell) -> None:
    """Drop progress lines from a cell's stdout: they are for the log, not for the reader."""
    kept = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            text = out["text"] if isinstance(out["text"], str) else "".join(out["text"])
            lines = text.splitlines(keepends=True)
            out["text"] = "".join(ln for ln in lines if not ln.startswith(progress.PREFIX))
            if not out["text"]:
                continue
        kept.append(out)
    cell["outputs"] = kept


def stage(
    root: Path, runs: list[ChapterRun], pages: list[str], stage_dir: Path, *, scale: str = ""
) -> None:
    """A source tree for Jupyter Book holding the executed notebooks (a placeholder for a page
    not in ``runs``), MathJax under ``_static``, and no ``.md`` chapters."""
    import nbformat

    if stage_dir.exists():
        shutil.rmtree(stage_dir)
    (stage_dir / "book").mkdir(parents=True)
    shutil.copy2(root / "_toc.yml", stage_dir / "_toc.yml")
    with open(root / "_config.yml") as fh:
        config = yaml.safe_load(fh)
    # the chapters' .md sources, offered for download beside the notebooks
    config.setdefault("sphinx", {}).setdefault("config", {})["hessnoise_md_sources"] = str(root)
    with open(stage_dir / "_config.yml", "w") as fh:
        yaml.safe_dump(config, fh, allow_unicode=True, sort_keys=False)
    for asset in BOOK_ASSETS:
        src = root / "book" / asset
        if src.is_dir():
            shutil.copytree(src, stage_dir / "book" / asset)
        elif src.exists():
            shutil.copy2(src, stage_dir / "book" / asset)
    mathjax = mathjax_dir(root)
    for part in MATHJAX_PARTS:
        src, dst = mathjax / part, stage_dir / "_static" / "mathjax" / part
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copy2(src, dst)
    by_name = {r.name: r for r in runs}
    for page in pages:
        target = stage_dir / f"{page}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        run = by_name.get(Path(page).name)
        if run is None:
            nbformat.write(_placeholder(root / f"{page}.md", scale), target)
            continue
        nb = nbformat.read(run.notebook, as_version=4)
        for cell in nb.cells:  # the provenance box says which parameters ran
            tags = cell.get("metadata", {}).get("tags", [])
            if {"parameters", "injected-parameters"} & set(tags):
                cell.metadata["tags"] = [*tags, "remove-cell"]
            if cell.cell_type == "code":
                _without_progress(cell)
        nbformat.write(nb, target)


def build_html(stage_dir: Path, html_dir: Path) -> None:
    """Run Jupyter Book (execution off, ``--all``, warnings as errors) and move the HTML."""
    cmd = [
        str(Path(sys.executable).with_name("jupyter-book")),
        "build",
        str(stage_dir),
        "--path-output",
        str(stage_dir),
        "--all",
        "-W",
        "--keep-going",
        "--builder",
        "html",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    log = ANSI.sub("", proc.stdout + proc.stderr)
    if proc.returncode != 0 or "WARNING" in log or "ERROR" in log:
        raise BookError(f"the HTML build failed (warnings are errors):\n{log[-6000:]}")
    if html_dir.exists():
        shutil.rmtree(html_dir)
    shutil.move(str(stage_dir / "_build" / "html"), str(html_dir))
