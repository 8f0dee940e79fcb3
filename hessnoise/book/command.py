"""Execute the book and build its HTML.

``python -m hessnoise.book --scale small --device auto`` (what ``make book`` runs):

1. reads ``_toc.yml`` and converts each chapter's MyST-markdown source to a notebook with
   jupytext;
2. skips every chapter whose results are current (see *Cache* in :mod:`hessnoise.book.sources`)
   and checks, before any chapter runs, that the data of every chapter about to run is on this
   machine (a module a chapter imports declares it with ``required_data(scale)``;
   :func:`hessnoise.data.ensure` downloads it where the experiment allows, and otherwise the
   build stops, naming the chapter and the dataset);
3. executes the other chapters one at a time with papermill, injecting ``scale``, ``device``,
   ``seed`` and ``results_dir`` into the cell tagged ``parameters``; the root page (the
   claims table) runs last because it summarizes the others' results.  A chapter's stdout is
   kept in ``_build/logs/<scale>/<chapter>.log``, and its progress lines
   (:mod:`hessnoise.progress`) are shown as they come;
4. stops at the first failing cell or failed check, naming the chapter and printing the
   cell's traceback;
5. copies the executed notebooks into a staging tree (never beside their ``.md``), with
   MathJax from ``node_modules/mathjax`` (``make`` installs it with ``npm ci``) so that the
   formulas render without a network, and builds the HTML there with Jupyter Book: execution
   off, ``--all``, warnings as errors.

``--chapter NAME`` runs one chapter (unless it is current), then the root page if any result
changed, and rebuilds the HTML with the results of the other chapters that are current; a
chapter with no current results gets a page that says so.  ``--force`` reruns the chapter
(or, without ``--chapter``, every chapter) even if it is current.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from hessnoise._validate import choice, number
from hessnoise.book.execute import execute_chapter
from hessnoise.book.html import build_html, stage
from hessnoise.book.needs import check_data
from hessnoise.book.sources import (
    BookError,
    ChapterRun,
    _paths,
    chapter_key,
    execution_order,
    toc_files,
    why_not_current,
)
from hessnoise.report import repo_root, write_json_atomic
from hessnoise.scales import DEFAULT_DEVICE, DEFAULT_SCALE, SCALES, check_scale, resolve_device


def _set_aside(results_dir: Path, keep: set[str]) -> list[str]:
    """Move every results file in ``results_dir`` but those of ``keep`` to ``stale/``, so that
    the claims table reads current results only; return the names moved."""
    moved = []
    for path in sorted(results_dir.glob("*.json")):
        if path.stem in keep:
            continue
        (results_dir / "stale").mkdir(parents=True, exist_ok=True)
        os.replace(path, results_dir / "stale" / path.name)
        path.with_suffix(".key").unlink(missing_ok=True)
        moved.append(path.stem)
    return moved


def build(
    scale: str = DEFAULT_SCALE,
    device: str = DEFAULT_DEVICE,
    *,
    seed: int = 0,
    root: str | Path | None = None,
    build_dir: str | Path | None = None,
    html: bool = True,
    chapter: str | None = None,
    force: bool = False,
    log: Callable = print,
) -> list[ChapterRun]:
    """Execute the book at ``scale`` on ``device`` (every chapter, or only ``chapter``),
    skipping chapters whose results are current unless ``force``, then build the HTML.

    Arguments are validated, and every dataset of the chapters about to run is checked,
    before anything runs.  Returns the chapters of this build in execution order (current
    ones with ``skipped=True``; in ``chapter`` mode, only those with current results).
    Raises :class:`BookError` naming the chapter at the first failure.
    """
    check_scale(scale)
    device_type = resolve_device(device).type  # fails here for an unknown or absent device
    number("seed", seed, lo=0, integer=True)
    root = Path(root).resolve() if root else repo_root()
    build_dir = Path(build_dir).resolve() if build_dir else root / "_build"
    pages = toc_files(root)
    missing = [p for p in pages if not (root / f"{p}.md").exists()]
    if missing:
        raise BookError(f"_toc.yml names pages with no .md source: {', '.join(missing)}")
    by_name = {Path(p).name: p for p in pages}
    if chapter is not None:
        choice("chapter", chapter, tuple(by_name))
    root_page, chapters = pages[0], execution_order(pages)[:-1]
    targets = chapters if chapter is None else [p for p in chapters if Path(p).name == chapter]

    def key_of(page: str, results: dict[str, Path] | None = None) -> dict:
        return chapter_key(
            root, page, scale=scale, device_type=device_type, seed=seed, build_dir=build_dir,
            results=results,
        )  # fmt: skip

    keys = {p: key_of(p) for p in chapters}
    why = {p: why_not_current(build_dir, scale, Path(p).name, keys[p]) for p in chapters}
    to_run = [p for p in targets if force or why[p] is not None]
    check_data(root, [*to_run, root_page], scale, log)

    runs: dict[str, ChapterRun] = {}
    total = time.perf_counter()
    for page in chapters:
        name = Path(page).name
        results, key_file, executed = _paths(build_dir, scale, name)
        if page not in to_run:
            if why[page] is None:
                log(f"[book] {page}: results are current, skipped")
                runs[name] = ChapterRun(name, executed, results, 0.0, skipped=True)
            continue
        reason = "forced" if force and why[page] is None else why[page]
        log(f"[book] executing {page} (scale={scale}, device={device}; {reason}) ...")
        key_file.unlink(missing_ok=True)
        runs[name] = execute_chapter(
            root, page, scale=scale, device=device, seed=seed, build_dir=build_dir, log=log
        )
        write_json_atomic(key_file, keys[page])
        log(f"[book]   {name}: {runs[name].seconds:.1f} s")

    # The claims table reads every results file: only current ones may be there.
    results_dir = build_dir / "results" / scale
    results_dir.mkdir(parents=True, exist_ok=True)
    root_name = Path(root_page).name
    for name in _set_aside(results_dir, keep=set(runs) | {root_name}):
        log(f"[book] {name}: results not current, set aside in {results_dir / 'stale'}")
    root_key = key_of(root_page, {name: run.results for name, run in runs.items()})
    root_why = why_not_current(build_dir, scale, root_name, root_key)
    results, key_file, executed = _paths(build_dir, scale, root_name)
    if root_why is None and not force:
        log(f"[book] {root_page}: results are current, skipped")
        runs[root_name] = ChapterRun(root_name, executed, results, 0.0, skipped=True)
    else:
        log(f"[book] executing {root_page} (scale={scale}, device={device}) ...")
        key_file.unlink(missing_ok=True)
        runs[root_name] = execute_chapter(
            root, root_page, scale=scale, device=device, seed=seed, build_dir=build_dir, log=log
        )
        write_json_atomic(key_file, root_key)
        log(f"[book]   {root_name}: {runs[root_name].seconds:.1f} s")
    log(f"[book] executed in {time.perf_counter() - total:.1f} s")
    if html:
        t0 = time.perf_counter()
        build_html_dir = build_dir / "stage" / scale
        stage(root, list(runs.values()), pages, build_html_dir, scale=scale)
        build_html(build_html_dir, build_dir / "html")
        seconds = time.perf_counter() - t0
        log(f"[book] HTML built in {seconds:.1f} s: {build_dir / 'html' / 'index.html'}")
    order = [Path(p).name for p in execution_order(pages)]
    return sorted(runs.values(), key=lambda r: order.index(r.name))


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
    parser.add_argument(
        "--chapter",
        default=None,
        help="run this chapter only (a file name in _toc.yml, without .md), then the claims "
        "page, and rebuild the HTML with the other chapters' current results",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="rerun even if the results are current",
    )
    parser.add_argument("--no-html", action="store_true", help="execute only")
    args = parser.parse_args(argv)
    try:
        build(
            args.scale,
            args.device,
            seed=args.seed,
            build_dir=args.build_dir,
            html=not args.no_html,
            chapter=args.chapter,
            force=args.force,
        )
    except (BookError, ValueError) as err:
        print(f"[book] FAILED: {err}", file=sys.stderr)
        return 1
    return 0
