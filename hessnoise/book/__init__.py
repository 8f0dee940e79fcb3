"""Execute the book and build its HTML.

``python -m hessnoise.book --scale small --device auto`` (what ``make book`` runs) executes
every chapter of ``_toc.yml`` whose results are not current with papermill, the root page (the
claims table) last, and builds the HTML with Jupyter Book; ``--chapter NAME`` runs one chapter
and ``--force`` reruns what is current.  One module per step:

* :mod:`hessnoise.book.sources` — the table of contents, conversion to notebooks with jupytext,
  and what a chapter's results depend on (the cache key: *Cache* in its module doc);
* :mod:`hessnoise.book.needs` — the datasets the chapters read, checked before any chapter runs;
* :mod:`hessnoise.book.execute` — running one chapter with papermill, its stdout log, its
  errors and failed checks;
* :mod:`hessnoise.book.html` — the executed notebooks staged with MathJax and built into HTML;
* :mod:`hessnoise.book.command` — :func:`build` and the command line, in the order above.

Everything is written under the build folder (default ``_build``)::

    _build/notebooks/<scale>/<chapter>.ipynb   converted, not executed
    _build/executed/<scale>/<chapter>.ipynb    executed
    _build/results/<scale>/<chapter>.json      checks and metrics (see hessnoise.report)
    _build/results/<scale>/<chapter>.key       the cache key of those results
    _build/logs/<scale>/<chapter>.log          the chapter's stdout
    _build/html/                               the rendered book
"""

from hessnoise.book.command import build, main
from hessnoise.book.execute import ANSI, execute_chapter
from hessnoise.book.html import BOOK_ASSETS, MATHJAX_PARTS, build_html, mathjax_dir, stage
from hessnoise.book.needs import chapter_data, check_data
from hessnoise.book.sources import (
    KEY_VERSION,
    BookError,
    ChapterRun,
    chapter_inputs,
    chapter_key,
    convert,
    execution_order,
    imported_modules,
    toc_files,
    why_not_current,
)

__all__ = [
    "ANSI",
    "BOOK_ASSETS",
    "KEY_VERSION",
    "MATHJAX_PARTS",
    "BookError",
    "ChapterRun",
    "build",
    "build_html",
    "chapter_data",
    "chapter_inputs",
    "chapter_key",
    "check_data",
    "convert",
    "execute_chapter",
    "execution_order",
    "imported_modules",
    "main",
    "mathjax_dir",
    "stage",
    "toc_files",
    "why_not_current",
]
