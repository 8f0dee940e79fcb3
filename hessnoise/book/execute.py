"""Running one chapter with papermill.

:func:`execute_chapter` converts the chapter and executes it, injecting ``scale``, ``device``,
``seed`` and ``results_dir`` into the cell tagged ``parameters``.  The chapter's stdout is kept
in ``_build/logs/<scale>/<chapter>.log``, and its progress lines (:mod:`hessnoise.progress`)
are shown as they come.  It stops at the first failing cell, rendered error or failed check,
naming the chapter and printing the cell's traceback.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from hessnoise import progress
from hessnoise.book.sources import BookError, ChapterRun, _paths, convert

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _error_outputs(notebook: Path) -> list[str]:
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    found = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                found.append(f"cell {i}: {out.get('ename')}: {out.get('evalue')}")
    return found


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
