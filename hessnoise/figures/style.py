"""The house style of the book's figures, applied without touching global state.

Every figure function is wrapped in :func:`styled`, which builds the figure inside
``plt.style.context(STYLE)``: the caller's matplotlib settings are never changed.  Colours are
named after what they mean, so that one colour means one thing across the book:

* noises: :data:`SGD_NOISE` red and :data:`ISO_NOISE` blue, as in the paper's Fig. 2(c)–(d),
  :data:`LABEL_NOISE` green;
* sweeps: :data:`ETA_SWEEP` and :data:`BATCH_SWEEP`, colours no noise uses;
* :data:`THEORY` black for every theory curve, :data:`REFERENCE` grey for guides.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

STYLE: dict[str, Any] = {
    "figure.dpi": 110,
    "savefig.dpi": 110,
    "font.size": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "legend.frameon": False,
}

SGD_NOISE = "#c0392b"
ISO_NOISE = "#2c6fbb"
LABEL_NOISE = "#27ae60"
ETA_SWEEP = "#d35400"
BATCH_SWEEP = "#6c3483"
THEORY = "#222222"
REFERENCE = "#8a8a8a"
# Series with no meaning of their own (coordinates, estimators, seeds), in order.
SERIES = ("#1b9e77", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d")

F = TypeVar("F", bound=Callable[..., Any])


def styled(fn: F) -> F:
    """Run a figure function inside ``plt.style.context(STYLE)``."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with plt.style.context(STYLE):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def log_axes(ax: Any, *, dense: bool = False) -> None:
    """Log scales on both axes, labels on the decades only (minor labels collide); with
    ``dense``, for data spanning about a decade, labels at 1, 2 and 5 times each power of ten."""
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_minor_formatter(NullFormatter())
        if dense:
            axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
