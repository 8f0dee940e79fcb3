"""The pages of the book, and what each chapter's results depend on.

:func:`toc_files` reads ``_toc.yml``; :func:`convert` turns a chapter's MyST-markdown source
into a notebook with jupytext; :func:`chapter_key` hashes what its results depend on, and
:func:`why_not_current` compares that key with the one stored beside the results.

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
"""

from __future__ import annotations

import ast
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

# The ``hessnoise/`` package directory (this file is ``hessnoise/book/sources.py``).
PACKAGE_DIR = Path(__file__).resolve().parent.parent
# Bump when what a key hashes changes, so that every chapter reruns once.
KEY_VERSION = 1


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
