"""The datasets the chapters read, checked before any chapter runs.

A module that a chapter imports (:func:`hessnoise.book.sources.imported_modules`) declares the
data it reads at a scale with ``required_data(scale)`` (name → whether it may be downloaded);
:func:`check_data` makes sure all of it is on this machine (:func:`hessnoise.data.ensure`
downloads it where the experiment allows), and otherwise stops the build, naming the chapter
and the dataset.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from hessnoise import data
from hessnoise.book.sources import BookError, imported_modules


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
