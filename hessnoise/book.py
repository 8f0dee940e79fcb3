"""Execute the book and build its HTML.

``python -m hessnoise.book --scale small --device auto`` (what ``make book`` runs):

1. reads ``_toc.yml`` and converts each chapter's MyST-markdown source to a notebook with
   jupytext;
2. executes the chapters one at a time with papermill, injecting ``scale``, ``device``,
   ``seed`` and ``results_dir`` into the cell tagged ``parameters``; the root page (the
   claims table) runs last because it summarizes the others' results;
3. stops at the first failing cell or failed check, naming the chapter and printing the
   cell's traceback;
4. copies the executed notebooks into a staging tree (never beside their ``.md``) and builds
   the HTML there with Jupyter Book: execution off, ``--all``, warnings as errors.

Everything is written under the build folder (default ``_build``)::

    _build/notebooks/<scale>/<chapter>.ipynb   converted, not executed
    _build/executed/<scale>/<chapter>.ipynb    executed
    _build/results/<scale>/<chapter>.json      checks and metrics (see hessnoise.report)
    _build/html/                               the rendered book
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from hessnoise._validate import number
from hessnoise.report import repo_root
from hessnoise.scales import DEFAULT_DEVICE, DEFAULT_SCALE, SCALES, check_scale, resolve_device

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Files beside the chapters that the HTML build needs.
BOOK_ASSETS = ("references.bib",)


class BookError(RuntimeError):
    """The book could not be executed or built; the message says where and why."""


@dataclass(frozen=True)
class ChapterRun:
    """One executed chapter: where its notebook and results went, and how long it took."""

    name: str
    notebook: Path
    results: Path
    seconds: float


def toc_files(root: Path) -> list[str]:
    """The pages of ``_toc.yml`` in reading order, as paths without extension."""
    with open(root / "_toc.yml") as fh:
        toc = yaml.safe_load(fh)
    files = [toc["root"]]

    def walk(entries: list[dict]) -> None:
        for entry in entries:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections", []))

    for part in toc.get("parts", [{"chapters": toc.get("chapters", [])}]):
        walk(part.get("chapters", []))
    return files


def execution_order(files: list[str]) -> list[str]:
    """The root page summarizes every other page's results, so it runs last."""
    return [*files[1:], files[0]]


def convert(source: Path, target: Path) -> None:
    """MyST markdown → ``.ipynb`` with jupytext; refuse a chapter with no ``parameters`` cell."""
    import jupytext
    import nbformat

    nb = jupytext.read(source)
    if not any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells):
        raise BookError(f"{source}: no code cell is tagged 'parameters'; papermill needs one")
    nb.metadata.setdefault("kernelspec", {"name": "python3", "display_name": "Python 3"})
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, target)


def _error_outputs(notebook: Path) -> list[str]:
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    found = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                found.append(f"cell {i}: {out.get('ename')}: {out.get('evalue')}")
    return found


def execute_chapter(
    root: Path, page: str, *, scale: str, device: str, seed: int, build_dir: Path
) -> ChapterRun:
    """Convert and execute one page; raise :class:`BookError` with its traceback on failure."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    name = Path(page).name
    source = root / f"{page}.md"
    unexecuted = build_dir / "notebooks" / scale / f"{name}.ipynb"
    executed = build_dir / "executed" / scale / f"{name}.ipynb"
    results_dir = build_dir / "results" / scale
    convert(source, unexecuted)
    executed.parent.mkdir(parents=True, exist_ok=True)
    params = {
        "scale": scale,
        "device": device,
        "seed": seed,
        "results_dir": str(results_dir.resolve()),
    }
    start = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(unexecuted),
            str(executed),
            parameters=params,
            kernel_name="python3",
            cwd=str(source.parent),
            progress_bar=False,
            log_output=False,
            # the kernel's own start-up chatter (a TCP notice) is not the chapter's output
            extra_arguments=["--IPKernelApp.log_level=ERROR"],
        )
    except PapermillExecutionError as err:
        trace = ANSI.sub("", "\n".join(err.traceback))
        raise BookError(
            f"chapter {name!r} ({source}) failed in cell {err.exec_count} "
            f"at scale={scale!r}, device={device!r}:\n{trace}"
        ) from None
    seconds = time.perf_counter() - start
    errors = _error_outputs(executed)
    if errors:
        raise BookError(f"chapter {name!r} rendered errors: {'; '.join(errors)}")
    results = results_dir / f"{name}.json"
    if not results.exists():
        raise BookError(f"chapter {name!r} wrote no results file {results}")
    with open(results) as fh:
        failed = [c["name"] for c in json.load(fh)["checks"] if not c["passed"]]
    if failed:
        raise BookError(f"chapter {name!r} has failed checks: {', '.join(failed)}")
    return ChapterRun(name, executed, results, seconds)


def stage(root: Path, runs: list[ChapterRun], pages: list[str], stage_dir: Path) -> None:
    """A source tree for Jupyter Book holding the executed notebooks and no ``.md`` chapters."""
    import nbformat

    if stage_dir.exists():
        shutil.rmtree(stage_dir)
    (stage_dir / "book").mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(root / name, stage_dir / name)
    for asset in BOOK_ASSETS:
        src = root / "book" / asset
        if src.is_dir():
            shutil.copytree(src, stage_dir / "book" / asset)
        elif src.exists():
            shutil.copy2(src, stage_dir / "book" / asset)
    by_name = {r.name: r for r in runs}
    for page in pages:
        target = stage_dir / f"{page}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        nb = nbformat.read(by_name[Path(page).name].notebook, as_version=4)
        for cell in nb.cells:  # the provenance box says which parameters ran
            tags = cell.get("metadata", {}).get("tags", [])
            if {"parameters", "injected-parameters"} & set(tags):
                cell.metadata["tags"] = [*tags, "remove-cell"]
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


def build(
    scale: str = DEFAULT_SCALE,
    device: str = DEFAULT_DEVICE,
    *,
    seed: int = 0,
    root: str | Path | None = None,
    build_dir: str | Path | None = None,
    html: bool = True,
    log=print,
) -> list[ChapterRun]:
    """Execute every chapter of the book at ``scale`` on ``device``, then build the HTML.

    Arguments are validated before anything runs.  Raises :class:`BookError` naming the
    chapter at the first failure.
    """
    check_scale(scale)
    resolve_device(device)  # an unknown device, or 'cuda' without CUDA, fails before any chapter
    number("seed", seed, lo=0, integer=True)
    root = Path(root).resolve() if root else repo_root()
    build_dir = Path(build_dir).resolve() if build_dir else root / "_build"
    pages = toc_files(root)
    missing = [p for p in pages if not (root / f"{p}.md").exists()]
    if missing:
        raise BookError(f"_toc.yml names pages with no .md source: {', '.join(missing)}")
    results_dir = build_dir / "results" / scale
    if results_dir.exists():  # the claims table must never read a stale result
        shutil.rmtree(results_dir)
    runs = []
    total = time.perf_counter()
    for page in execution_order(pages):
        log(f"[book] executing {page} (scale={scale}, device={device}) ...")
        run = execute_chapter(
            root, page, scale=scale, device=device, seed=seed, build_dir=build_dir
        )
        log(f"[book]   {run.name}: {run.seconds:.1f} s")
        runs.append(run)
    log(f"[book] all chapters executed in {time.perf_counter() - total:.1f} s")
    if html:
        t0 = time.perf_counter()
        build_html_dir = build_dir / "stage" / scale
        stage(root, runs, pages, build_html_dir)
        build_html(build_html_dir, build_dir / "html")
        seconds = time.perf_counter() - t0
        log(f"[book] HTML built in {seconds:.1f} s: {build_dir / 'html' / 'index.html'}")
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hessnoise.book", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--scale", default=os.environ.get("SCALE", DEFAULT_SCALE), help=f"one of {SCALES}"
    )
    parser.add_argument("--device", default=os.environ.get("DEVICE", DEFAULT_DEVICE))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--build-dir", default=None)
    parser.add_argument("--no-html", action="store_true", help="execute only")
    args = parser.parse_args(argv)
    try:
        build(
            args.scale, args.device, seed=args.seed, build_dir=args.build_dir, html=not args.no_html
        )
    except (BookError, ValueError) as err:
        print(f"[book] FAILED: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
