"""``python -m hessnoise.book``: what ``make book`` runs (see :mod:`hessnoise.book.command`)."""

import sys

from hessnoise.book.command import main

if __name__ == "__main__":
    sys.exit(main())
