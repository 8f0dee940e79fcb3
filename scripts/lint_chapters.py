"""Lint and format-check the chapters' code cells with ruff, through jupytext.

The code cells of each ``book/*.md`` (read with jupytext) are joined into one script, cells
separated by ``# %%`` markers, and piped to ``ruff check`` and ``ruff format --check`` under the
name ``book/<chapter>.py``, so that the project's ruff settings (and the per-file rules for
``book/``) apply.  With ``--fix`` the fixed and formatted cells are written back into the
``.md`` through jupytext.

    python scripts/lint_chapters.py          # check (make lint)
    python scripts/lint_chapters.py --fix    # format the chapters in place
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jupytext

ROOT = Path(__file__).resolve().parent.parent


def ruff(args: list[str], code: str, name: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "ruff", *args, "--stdin-filename", f"book/{name}.py", "-"]
    return subprocess.run(cmd, input=code, text=True, capture_output=True, cwd=ROOT)


MARK = "# %%"


def code_of(nb) -> tuple[list, str]:
    """The code cells of a notebook and their sources joined as one script."""
    cells = [c for c in nb.cells if c.cell_type == "code"]
    return cells, "\n\n".join(f"{MARK}\n{c.source}" for c in cells) + "\n"


def write_back(md: Path, nb, cells: list, script: str) -> None:
    """Put the cells of a fixed ``script`` back into the notebook and the ``.md``."""
    parts = script.split(MARK + "\n")[1:]
    for cell, part in zip(cells, parts, strict=True):
        cell.source = part.strip("\n")
    jupytext.write(nb, md, fmt="md:myst")


def main(argv: list[str]) -> int:
    fix = "--fix" in argv
    chapters = sorted((ROOT / "book").glob("*.md"))
    failed = False
    for md in chapters:
        nb = jupytext.read(md)
        cells, script = code_of(nb)
        if fix:
            fixed = ruff(["check", "--fix-only", "--exit-zero"], script, md.stem).stdout or script
            formatted = ruff(["format"], fixed, md.stem)
            if formatted.returncode == 0 and formatted.stdout != script:
                write_back(md, nb, cells, formatted.stdout)
                print(f"formatted {md.relative_to(ROOT)}")
                cells, script = code_of(jupytext.read(md))
        for args in (["check"], ["format", "--check", "--diff"]):
            proc = ruff(args, script, md.stem)
            if proc.returncode != 0:
                failed = True
                print(f"{md.relative_to(ROOT)}: ruff {' '.join(args)}\n{proc.stdout}{proc.stderr}")
    if not failed:
        print(f"chapters: ruff check and ruff format --check are clean on {len(chapters)} files")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
