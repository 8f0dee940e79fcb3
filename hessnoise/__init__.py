"""hessnoise: how noise shapes the Hessian spectrum (Wei & Schwab, 2019), as a tested package.

Modules, one idea each:

* :mod:`hessnoise.valley` — toy minimal valleys (eq. 1), noise models, heavy-ball SGD and the
  exact stationary statistics;
* :mod:`hessnoise.data`, :mod:`hessnoise.models` — datasets and networks;
* :mod:`hessnoise.report`, :mod:`hessnoise.book`, :mod:`hessnoise.claims` — the executable book;
* :mod:`hessnoise.experiments` — one module per chapter.
"""

from importlib import metadata

try:
    __version__ = metadata.version("hessnoise")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+local"
