"""Execute the book and build its HTML.

``python -m hessnoise.book --scale small --device auto`` (what ``make book`` runs):

1. reads ``_toc.yml`` and converts each chapter's MyST-markdown source to a notebook with
   jupytext;
2. skips every chapter whose results are current (see *Cache* below) and checks, before any
   chapter runs, that the data of every chapter about to run is on this machine (a module a
   chapter imports declares it with ``required_data(scale)``; :func:`hessnoise.data.ensure`
   downloads it where the experiment allows, and otherwise the build stops, naming the
   chapter and the dataset);
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

Cache.  A chapter's results are *current* when ``<chapter>.key`` beside its results file holds
the key of the present inputs and its results file and executed notebook exist.  The key
hashes the chapter's ``.md``, the source of every module of this package that it imports
(followed through the package's own imports; see :func:`imported_modules`), the files those
modules declare in ``BOOK_INPUTS`` (say, the benchmark results the curvature page shows), the
scale, the device class (``cpu`` / ``cuda``) and the seed; the root page's key also hashes
every other chapter's results file, so the claims table reruns whenever a result changed.
The key is written only after a chapter succeeds.  A results file that is not current is never
read: before the root page runs, the results of chapters that are not current are moved to
``results/<scale>/stale``.

Everything is written under the build folder (default ``_build``)::

    _build/notebooks/<scale>/<chapter>.ipynb   converted, not executed
    _build/executed/<scale>/<chapter>.ipynb    executed
    _build/results/<scale>/<chapter>.json      checks and metrics (see hessnoise.report)
    _build/results/<scale>/<chapter>.key       the cache key of those results
    _build/logs/<scale>/<chapter>.log          the chapter's stdout
    _build/html/                               the rendered book
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from hessnoise import data, progress
from hessnoise._validate import choice, number
from hessnoise.report import repo_root, write_json_atomic
from hessnoise.scales import DEFAULT_DEVICE, DEFAULT_SCALE, SCALES, check_scale, resolve_device

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Files beside the chapters that the HTML build needs.
BOOK_ASSETS = ("references.bib",)
PACKAGE_DIR = Path(__file__).resolve().parent
# Bump when what a key hashes changes, so that every chapter reruns once.
KEY_VERSION = 1
# MathJax 3, as `npm ci` installs it (package.json pins the version), and the parts of it the
# HTML needs: the combined TeX/MathML → CommonHTML component (Sphinx's default), the TeX
# extensions it loads on demand, the CommonHTML fonts, and the menu's accessibility parts.
MATHJAX_PARTS = ("tex-mml-chtml.js", "input", "output/chtml", "a11y", "ui", "sre", "adaptors")


class BookError(RuntimeError):
    """The book could not be executed or built; the message says where and why."""


@dataclass(frozen=True)
class ChapterRun:
    """One chapter of this build: where its notebook and results are, how long it took, and
    whether it was skipped because its results were current (then ``seconds`` is 0)."""

    name: str
    notebook: Path
    results: Path
    seconds: float
    skipped: bool = False


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


# -- what a chapter depends on ---------------------------------------------------------------


def _module_file(dotted: str) -> Path | None:
    """The source file of module ``dotted`` of this package, or ``None`` (not a module of it)."""
    parts = dotted.split(".")
    if parts[0] != PACKAGE_DIR.name:
        return None
    path = PACKAGE_DIR.parent.joinpath(*parts)
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return None


def _imports(tree: ast.AST, package: str) -> set[str]:
    """Dotted names that ``tree`` imports, with every parent package and, for ``from a import
    b``, ``a.b`` (a module or not: :func:`_module_file` tells)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative to ``package``
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join([*base, *([node.module] if node.module else [])])
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{alias.name}" for alias in node.names)
    parents = {".".join(n.split(".")[:k]) for n in found for k in range(1, n.count(".") + 1)}
    return found | parents


def imported_modules(source: Path) -> dict[str, Path]:
    """Every module of this package that the chapter ``source`` imports, directly or through
    the package's own imports, as ``{dotted name: file}``.

    Imports are read from the code (``ast``), not executed, so a module imported inside a
    function counts too.  A code cell that is not Python (an IPython magic) makes every module
    of the package count, which errs on the side of rerunning.
    """
    import jupytext

    nb = jupytext.read(source)
    names: set[str] = set()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        try:
            names |= _imports(ast.parse(cell.source), "")
        except SyntaxError:
            names |= {
                ".".join(f.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
                for f in PACKAGE_DIR.rglob("*.py")
            }
    found: dict[str, Path] = {}
    todo = sorted(names)
    while todo:
        name = todo.pop()
        name = name.removesuffix(".__init__")
        path = _module_file(name)
        if path is None or name in found:
            continue
        found[name] = path
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        todo.extend(_imports(ast.parse(path.read_bytes()), package) - set(found))
    return dict(sorted(found.items()))


def chapter_inputs(modules: dict[str, Path]) -> list[str]:
    """Files a chapter reads besides code: the ``BOOK_INPUTS`` (paths relative to the
    repository root) that the modules it imports declare.  Read from the source, not imported,
    so that computing a key runs no experiment code."""
    found: list[str] = []
    for path in modules.values():
        for node in ast.parse(path.read_bytes()).body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "BOOK_INPUTS" for t in node.targets
            ):
                found.extend(ast.literal_eval(node.value))
    return sorted(set(found))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def chapter_key(
    root: Path,
    page: str,
    *,
    scale: str,
    device_type: str,
    seed: int,
    build_dir: Path,
    results: dict[str, Path] | None = None,
) -> dict:
    """What a chapter's results depend on (see *Cache* in the module doc), as
    ``{"digest": sha256, "parts": {part: sha256 or value}}``.  ``results`` (name → results
    file) is given for the root page, whose claims table reads them."""
    source = root / f"{page}.md"
    parts: dict[str, str] = {
        "key_version": str(KEY_VERSION),
        "scale": scale,
        "device": device_type,
        "seed": str(seed),
        f"chapter:{page}.md": _sha(source.read_bytes()),
    }
    modules = imported_modules(source)
    for path in modules.values():
        parts[f"module:{path.relative_to(PACKAGE_DIR.parent).as_posix()}"] = _sha(path.read_bytes())
    for rel in chapter_inputs(modules):
        # ``_build/...`` means the build folder, wherever it is
        path = build_dir / rel[len("_build/") :] if rel.startswith("_build/") else root / rel
        parts[f"input:{rel}"] = _sha(path.read_bytes()) if path.is_file() else "missing"
    for name, path in sorted((results or {}).items()):
        parts[f"results:{name}"] = _sha(path.read_bytes())
    digest = _sha(json.dumps(parts, sort_keys=True).encode())
    return {"digest": digest, "parts": parts}


def _paths(build_dir: Path, scale: str, name: str) -> tuple[Path, Path, Path]:
    """Results file, key file and executed notebook of chapter ``name``."""
    results_dir = build_dir / "results" / scale
    return (
        results_dir / f"{name}.json",
        results_dir / f"{name}.key",
        build_dir / "executed" / scale / f"{name}.ipynb",
    )


def _stored_key(path: Path) -> dict | None:
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def why_not_current(build_dir: Path, scale: str, name: str, key: dict) -> str | None:
    """``None`` when chapter ``name``'s results are current for ``key``; otherwise why not."""
    results, key_file, executed = _paths(build_dir, scale, name)
    stored = _stored_key(key_file)
    if stored is None:
        return "no results yet"
    if not (results.exists() and executed.exists()):
        return "results or executed notebook missing"
    if stored.get("digest") == key["digest"]:
        return None
    old, new = stored.get("parts", {}), key["parts"]
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
    return "changed: " + ", ".join(changed[:4]) + more


# -- data ------------------------------------------------------------------------------------


def chapter_data(root: Path, page: str, scale: str) -> dict[str, bool]:
    """The datasets chapter ``page`` reads at ``scale`` (name → whether it may be downloaded):
    what the ``required_data(scale)`` functions of the modules it imports declare."""
    needs: dict[str, bool] = {}
    for dotted in imported_modules(root / f"{page}.md"):
        declare = getattr(importlib.import_module(dotted), "required_data", None)
        if callable(declare):
            for name, download in declare(scale).items():
                needs[name] = needs.get(name, False) or bool(download)
    return needs


def check_data(root: Path, pages: list[str], scale: str, log: Callable = print) -> None:
    """Make sure every dataset that ``pages`` read at ``scale`` is here (downloading what the
    experiments allow), before any chapter runs; raise :class:`BookError` naming each dataset
    that is missing and the chapters that need it."""
    needs: dict[str, list[str]] = {}
    may_download: dict[str, bool] = {}
    for page in pages:
        for name, download in chapter_data(root, page, scale).items():
            needs.setdefault(name, []).append(Path(page).name)
            may_download[name] = may_download.get(name, False) or download
    missing = []
    for name, chapters in needs.items():
        if not data.available(name) and may_download[name]:
            log(f"[book] downloading {name} for {', '.join(chapters)} ...")
        try:
            data.ensure(name, download=may_download[name])
        except data.DataMissing as err:
            which = ", ".join(repr(c) for c in chapters)
            who = f"chapter {which} needs" if len(chapters) == 1 else f"chapters {which} need"
            missing.append(f"{who} {name} at scale={scale!r}: {err}")
    if missing:
        raise BookError("data missing; no chapter was run:\n" + "\n".join(missing))


# -- execution -------------------------------------------------------------------------------


@contextmanager
def _environ(**values: str) -> Iterator[None]:
    """Set environment variables for the kernels started inside the block."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class _StdoutLog:
    """Where papermill writes a chapter's stdout as it arrives: the chapter's log file, and
    its progress lines to ``log``."""

    def __init__(self, path: Path, name: str, log: Callable) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(path, "w")  # closed by close()
        self.name, self.log, self.partial = name, log, ""

    def write(self, text: str) -> None:
        self.fh.write(text)
        lines = (self.partial + text).split("\n")
        self.partial = lines.pop()
        for line in lines:
            if line.startswith(progress.PREFIX):
                self.log(f"[book]   {self.name}: {line[len(progress.PREFIX) :].strip()}")

    def flush(self) -> None:
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


def execute_chapter(
    root: Path,
    page: str,
    *,
    scale: str,
    device: str,
    seed: int,
    build_dir: Path,
    log: Callable = print,
) -> ChapterRun:
    """Convert and execute one page; raise :class:`BookError` with its traceback on failure."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    name = Path(page).name
    source = root / f"{page}.md"
    unexecuted = build_dir / "notebooks" / scale / f"{name}.ipynb"
    results, _, executed = _paths(build_dir, scale, name)
    convert(source, unexecuted)
    executed.parent.mkdir(parents=True, exist_ok=True)
    params = {
        "scale": scale,
        "device": device,
        "seed": seed,
        "results_dir": str(results.parent.resolve()),
    }
    stdout = _StdoutLog(build_dir / "logs" / scale / f"{name}.log", name, log)
    start = time.perf_counter()
    try:
        # progress as lines on stdout, never a widget (the HTML would need a network for it)
        with _environ(**{progress.ENV: "lines"}):
            papermill.execute_notebook(
                str(unexecuted),
                str(executed),
                parameters=params,
                kernel_name="python3",
                cwd=str(source.parent),
                progress_bar=False,
                log_output=False,
                stdout_file=stdout,
                # the kernel's own start-up chatter (a TCP notice) is not the chapter's output
                extra_arguments=["--IPKernelApp.log_level=ERROR"],
            )
    except PapermillExecutionError as err:
        trace = ANSI.sub("", "\n".join(err.traceback))
        raise BookError(
            f"chapter {name!r} ({source}) failed in cell {err.exec_count} "
            f"at scale={scale!r}, device={device!r}:\n{trace}"
        ) from None
    finally:
        stdout.close()
    seconds = time.perf_counter() - start
    errors = _error_outputs(executed)
    if errors:
        raise BookError(f"chapter {name!r} rendered errors: {'; '.join(errors)}")
    if not results.exists():
        raise BookError(f"chapter {name!r} wrote no results file {results}")
    with open(results) as fh:
        failed = [c["name"] for c in json.load(fh)["checks"] if not c["passed"]]
    if failed:
        raise BookError(f"chapter {name!r} has failed checks: {', '.join(failed)}")
    return ChapterRun(name, executed, results, seconds)


# -- HTML ------------------------------------------------------------------------------------


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


# -- the command -----------------------------------------------------------------------------


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


if __name__ == "__main__":
    sys.exit(main())
