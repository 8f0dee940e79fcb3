"""Sphinx extension: the .md download beside the .ipynb on a page built from a notebook.

The book's HTML is built from the executed notebooks (:mod:`hessnoise.book` stages them), so
sphinx-book-theme's download menu would offer only the ``.ipynb``.  A chapter's source is its
MyST-markdown ``.md``, which opens in Jupyter with jupytext; this extension offers it too, as
the theme does for a page built from a ``.md``: it tells the theme that the page's source is
``<hessnoise_md_sources>/<page>.md`` and its notebook the ``.ipynb``, and copies both into
``_sources/``.  With ``hessnoise_md_sources`` unset (a build from the ``.md`` files), it does
nothing.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any


def _md_source(app: Any, pagename: str) -> Path | None:
    folder = app.config.hessnoise_md_sources
    if not folder:
        return None
    path = Path(folder) / f"{pagename}.md"
    return path if path.is_file() else None


def _offer_md(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    if context.get("page_source_suffix") != ".ipynb" or _md_source(app, pagename) is None:
        return
    context["ipynb_source"] = context["sourcename"]
    context["sourcename"] = f"{pagename}.md"
    context["page_source_suffix"] = ".md"


def _copy_sources(app: Any, exception: Exception | None) -> None:
    # Sphinx copies a page's source to _sources/<sourcename> after html-page-context, so it
    # wrote the notebook under the .md's name: put both files where the buttons point.
    if exception is not None or app.builder.format != "html":
        return
    for docname in app.env.found_docs:
        src = _md_source(app, docname)
        if src is None:
            continue
        target = Path(app.outdir) / "_sources" / docname
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(app.env.doc2path(docname), target.with_name(f"{target.name}.ipynb"))
        shutil.copy2(src, target.with_name(f"{target.name}.md"))


def setup(app: Any) -> dict[str, Any]:
    app.add_config_value("hessnoise_md_sources", None, "html")
    # before sphinx-book-theme builds its buttons (priority 501)
    app.connect("html-page-context", _offer_md, priority=500)
    app.connect("build-finished", _copy_sources)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
