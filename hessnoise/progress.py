"""Progress a person can see during the long loops of an experiment.

Sweeps of SGD runs, projections onto the floor and dense Hessians at paper scale take minutes
to hours.  This module reports on them in the way the place it runs in can show:

* in Jupyter (an IPython kernel with ``ipywidgets`` installed), a loop shows tqdm's notebook
  bar, with the last item's label and time beside it;
* anywhere else, in particular when ``make book`` executes a chapter with papermill, a loop
  prints one line per finished item, with its elapsed time, to **stdout**::

      [progress] sweep minibatch, seed 0: 3/9 (eta=0.05, S=10) finished in 12.3 s, 40.1 s in all

  papermill passes a chapter's stdout to the book command, which shows these lines and keeps
  them in ``_build/logs/<scale>/<chapter>.log``; they are left out of the HTML.  Nothing is
  ever written to stderr: the book build fails on anything a chapter writes there.

The environment variable ``HESSNOISE_PROGRESS`` overrides the choice: ``bar``, ``lines``,
``off`` or ``auto`` (the default, as above).  The book command sets ``lines``.

API (for experiment modules; a chapter calls the package, never this directly)::

    from hessnoise.progress import progress, timed

    for eta, s in progress(pairs, desc="sweep", label=lambda p: f"eta={p[0]:g}, S={p[1]}"):
        run(eta, s)                      # one line (or one bar step) per finished item

    with timed("floor, seed 0: Gauss-Newton"):
        fit = gauss_newton(...)          # one line when the block finishes

``progress(iterable, *, desc, total=None, label=None)`` yields the items of ``iterable``
unchanged; an item counts as finished when the loop asks for the next one (or ends).  ``total``
defaults to ``len(iterable)`` where that exists.  ``label(item) -> str`` names an item in its
line.  ``timed(desc)`` reports one line when its block ends without an exception.
``ticker(total, desc=..., lines=False)`` yields ``tick()`` for nested loops: a bar in Jupyter,
one line at the end (if ``lines``) elsewhere.
``report(text)`` prints one progress line.

>>> import os; os.environ["HESSNOISE_PROGRESS"] = "off"
>>> [x for x in progress(range(3), desc="demo")]
[0, 1, 2]
>>> del os.environ["HESSNOISE_PROGRESS"]
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from hessnoise._validate import choice

T = TypeVar("T")
MODES = ("auto", "bar", "lines", "off")
ENV = "HESSNOISE_PROGRESS"
# Every line this module prints starts with PREFIX; the book command finds them by it.
PREFIX = "[progress]"


def _in_jupyter_kernel() -> bool:
    """Whether this process is an IPython kernel (Jupyter, or papermill, which the book
    command tells apart through ``HESSNOISE_PROGRESS``)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def _widgets_available() -> bool:
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def mode() -> str:
    """``'bar' | 'lines' | 'off'``: what progress looks like here (see the module doc)."""
    chosen = choice(ENV, os.environ.get(ENV, "auto") or "auto", MODES)
    if chosen != "auto":
        return chosen
    return "bar" if _in_jupyter_kernel() and _widgets_available() else "lines"


def report(text: str) -> None:
    """Print one progress line to stdout (unless progress is ``off``)."""
    if mode() != "off":
        print(f"{PREFIX} {text}", file=sys.stdout, flush=True)


def _seconds(s: float) -> str:
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


def progress(
    iterable: Iterable[T],
    *,
    desc: str,
    total: int | None = None,
    label: Callable[[T], str] | None = None,
) -> Iterator[T]:
    """Yield the items of ``iterable``, reporting each one as it finishes (see module doc)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    how = mode()
    bar = None
    if how == "bar":
        from tqdm.notebook import tqdm

        bar = tqdm(total=total, desc=desc, leave=True)
    start = time.perf_counter()
    try:
        for k, item in enumerate(iterable, 1):
            t0 = time.perf_counter()
            yield item
            now = time.perf_counter()
            name = f" ({label(item)})" if label is not None else ""
            if bar is not None:
                bar.set_postfix_str(f"{name.strip(' ()')} {_seconds(now - t0)}".strip())
                bar.update(1)
            elif how == "lines":
                count = f"{k}/{total}" if total is not None else f"{k}"
                report(
                    f"{desc}: {count}{name} finished in {_seconds(now - t0)}, "
                    f"{_seconds(now - start)} in all"
                )
    finally:
        if bar is not None:
            bar.close()


@contextmanager
def ticker(total: int, *, desc: str, lines: bool = False) -> Iterator[Callable[[], None]]:
    """For a loop that is not one iterable (nested blocks): yields ``tick()``, which advances
    a bar of ``total`` steps in Jupyter.  Outside Jupyter it prints one line when the block
    finishes if ``lines`` is true, and nothing otherwise (for work that happens many times per
    run, such as each dense Hessian, whose lines would bury the runs' own).  ``total = 0``
    shows nothing: a caller passes 0 for work too small to be worth a bar."""
    how = mode() if total > 0 else "off"
    t0 = time.perf_counter()
    if how == "bar":
        from tqdm.notebook import tqdm

        bar = tqdm(total=total, desc=desc, leave=False)
        try:
            yield lambda: bar.update(1)
        finally:
            bar.close()
    else:
        yield lambda: None
    if lines and how == "lines":
        report(f"{desc}: finished in {_seconds(time.perf_counter() - t0)}")


@contextmanager
def timed(desc: str) -> Iterator[None]:
    """Report ``desc`` with its elapsed time when the block finishes without an exception."""
    t0 = time.perf_counter()
    yield
    report(f"{desc}: finished in {_seconds(time.perf_counter() - t0)}")


__all__ = ["ENV", "MODES", "PREFIX", "mode", "progress", "report", "ticker", "timed"]
