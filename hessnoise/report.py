"""What a chapter records: its checks, its metrics, and where they came from.

A chapter opens a :class:`Chapter` in its first cell, records each check with
:meth:`Chapter.check` (which glues the value for the prose, writes the results file and
raises when the check fails, so a failed check fails the build) and closes with
:meth:`Chapter.finish`, which displays the provenance box.

Between them, a chapter records what it measured without bookkeeping of its own:

* :meth:`Chapter.estimate` records an estimate with its interval (or standard error) and glues
  it as one formatted string, ``"−24.6 [−27.7, −21.8]"``;
* :meth:`Chapter.record` records every scalar field of a result record (a dataclass or a
  mapping) under a prefix;
* :meth:`Chapter.verdict` records a measured yes/no answer to one of the paper's claims and
  glues it as "confirmed" or "not confirmed": the one thing a chapter glues as words.

A check is either a ``"test"``, which could have failed had the paper or the code been wrong,
or a ``"consistency"`` check: an identity or a sanity check that holds by construction.  The
claims table counts only tests as evidence.

The results file ``<results_dir>/<chapter>.json`` holds::

    {"chapter", "scale", "device", "checks": [{"name", "value", "target", "passed", "kind"}],
     "metrics": {...}, "provenance": {...}}

It is rewritten atomically after every check, so a chapter that dies half-way still leaves
the checks it made.
"""

from __future__ import annotations

import json
import math
import os
import platform
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hessnoise._validate import choice, number
from hessnoise.provenance import cpu_name, git_commit, process_age
from hessnoise.scales import check_device, check_scale, resolve_device
from hessnoise.stats import Estimate, Interval

CHECK_KINDS = ("test", "consistency")


class CheckFailed(AssertionError):
    """A chapter's check did not hold."""


def repo_root(start: Path | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: cwd) that holds ``_toc.yml``."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").exists():
            return folder
    return here


def default_results_dir(scale: str) -> Path:
    """``<repo>/_build/results/<scale>``, or ``$HESSNOISE_RESULTS/<scale>`` when that is set."""
    base = os.environ.get("HESSNOISE_RESULTS")
    root = Path(base) if base else repo_root() / "_build" / "results"
    return root / scale


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON to ``path`` through a temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh, indent=2, allow_nan=False)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def to_json(value: Any) -> Any:
    """Plain-JSON form of numbers, tensors and arrays; non-finite floats become ``None``."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return [to_json(v) for v in value.tolist()] if value.ndim else to_json(value.item())
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


def _glue(name: str, value: Any) -> None:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, np.generic):  # numpy 2 shows np.float64(0.5), which no format reads
        value = value.item()
    try:
        from myst_nb import glue
    except ImportError:  # outside a notebook toolchain there is nothing to glue into
        return
    glue(name, value, display=False)


@dataclass
class Check:
    """One asserted check: ``value`` compared with ``target`` (a readable rule).

    ``kind`` is ``'test'`` when the check could have failed (evidence for or against a claim)
    or ``'consistency'`` for an identity or sanity check that holds by construction.
    """

    name: str
    value: Any
    target: str
    passed: bool
    kind: str = "test"


@dataclass
class Chapter:
    """The record of one chapter's execution.

    Parameters
    ----------
    name : chapter file stem, e.g. ``"minimal_valley"``.
    scale : one of ``'smoke' | 'small' | 'paper'``.
    device : one of ``'auto' | 'cpu' | 'cuda'``; resolved to :attr:`torch_device`.
    seed : base seed of every random number the chapter draws.
    results_dir : folder of the results file; default :func:`default_results_dir`.
    """

    name: str
    scale: str
    device: str = "auto"
    seed: int = 0
    results_dir: str | Path | None = None
    checks: list[Check] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    _glued: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        check_scale(self.scale)
        check_device(self.device)
        number("seed", self.seed, lo=0, integer=True)
        self.torch_device = resolve_device(self.device)
        self.results_dir = Path(self.results_dir or default_results_dir(self.scale))
        self.started = time.perf_counter() - process_age()
        self._save()

    @property
    def path(self) -> Path:
        """The results file."""
        return Path(self.results_dir) / f"{self.name}.json"

    def checkpoints(self, experiment: str | None = None, seed: int | None = None) -> Path:
        """Where long runs keep their checkpoints: ``<build>/checkpoints/<scale>/<experiment>/
        seed<seed>`` beside ``<build>/results/<scale>`` (else inside the results folder).
        ``experiment`` defaults to this chapter, ``seed`` to its seed; chapters that share a
        computation (the floor of the Section 4.1 network) name the same experiment."""
        results = Path(self.results_dir)
        if results.name == self.scale and results.parent.name == "results":
            root = results.parent.parent / "checkpoints" / self.scale
        else:
            root = results / "checkpoints"
        seed = self.seed if seed is None else seed
        return root / (experiment or self.name) / f"seed{seed}"

    # -- recording ---------------------------------------------------------------------------
    def metric(self, name: str, value: Any, *, glue: bool = True) -> None:
        """Record a measured number (glued under ``name`` for the prose)."""
        self.metrics[name] = to_json(value)
        if glue:
            self._glue(name, value)
        self._save()

    def figure(self, name: str, fig: Any) -> None:
        """Glue a matplotlib figure under ``name`` for a ``{glue:figure}`` and close it."""
        import matplotlib.pyplot as plt

        self._glue(name, fig)
        plt.close(fig)

    def check(
        self, name: str, value: Any, target: str, passed: bool, *, kind: str = "test"
    ) -> None:
        """Record a check, glue its value under ``name``, and raise :class:`CheckFailed` if it
        did not pass.  ``target`` is the rule in words, e.g. ``"< 0.01"``; ``kind`` is
        ``'test'`` or ``'consistency'`` (see :class:`Check`)."""
        choice("kind", kind, CHECK_KINDS)
        passed = bool(passed)
        self.checks = [c for c in self.checks if c.name != name]
        self.checks.append(Check(name, to_json(value), target, passed, kind))
        self._glue(name, value)
        self._save()
        if not passed:
            raise CheckFailed(
                f"{self.name}: check {name!r} failed: value {value!r}, target {target}"
            )

    def check_all(self, checks: list[Check]) -> None:
        """Record and assert checks that a package function prepared (see :class:`Check`)."""
        for c in checks:
            self.check(c.name, c.value, c.target, c.passed, kind=c.kind)

    def check_below(self, name: str, value: float, bound: float, *, kind: str = "test") -> None:
        """Check ``value < bound``."""
        self.check(name, value, f"< {bound:g}", float(value) < bound, kind=kind)

    def check_between(
        self, name: str, value: float, lo: float, hi: float, *, kind: str = "test"
    ) -> None:
        """Check ``lo <= value <= hi``."""
        self.check(name, value, f"in [{lo:g}, {hi:g}]", lo <= float(value) <= hi, kind=kind)

    def check_true(self, name: str, value: bool, target: str, *, kind: str = "test") -> None:
        """Check a yes/no statement, stated in ``target``."""
        self.check(name, bool(value), target, bool(value), kind=kind)

    def estimate(self, name: str, est: Interval | Estimate, *, fmt: str = ".3g") -> None:
        """Record an estimate with its interval (``name``, ``name_lo``, ``name_hi``) or its
        standard error (``name``, ``name_se``), and glue ``name`` as one string formatted with
        ``fmt``: ``"v [lo, hi]"`` or ``"v ± se"``."""
        if isinstance(est, Interval):
            parts = {name: est.value, f"{name}_lo": est.lo, f"{name}_hi": est.hi}
        elif isinstance(est, Estimate):
            parts = {name: est.value, f"{name}_se": est.se}
        else:
            raise ValueError(f"est must be an Interval or an Estimate; got {type(est).__name__}")
        for key, value in parts.items():
            self.metrics[key] = to_json(value)
        self._glue(name, format(est, fmt))
        self._save()

    def record(self, prefix: str, result: Any, *, fmt: str = ".3g") -> None:
        """Record every scalar field of ``result`` (a dataclass or a mapping) as
        ``<prefix>_<field>`` (``<field>`` for an empty prefix), glued for the prose.

        Numbers, strings and booleans are recorded as metrics; :class:`Interval` and
        :class:`Estimate` fields through :meth:`estimate`; tensors and arrays with more than
        one element, lists and nested records are skipped.
        """
        if is_dataclass(result) and not isinstance(result, type):
            items = {f.name: getattr(result, f.name) for f in fields(result)}
        elif isinstance(result, Mapping):
            items = dict(result)
        else:
            raise ValueError(
                f"result must be a dataclass instance or a mapping; got {type(result).__name__}"
            )
        for key, value in items.items():
            name = f"{prefix}_{key}" if prefix else str(key)
            if isinstance(value, (Interval, Estimate)):
                self.estimate(name, value, fmt=fmt)
                continue
            if isinstance(value, (torch.Tensor, np.ndarray)):
                size = value.numel() if isinstance(value, torch.Tensor) else value.size
                if size != 1:
                    continue
                value = value.item()
            if isinstance(value, (bool, int, float, str, np.floating, np.integer, np.bool_)):
                self.metrics[name] = to_json(value)
                self._glue(name, value)
        self._save()

    def verdict(self, name: str, holds: bool) -> bool:
        """Record a measured answer to one of the paper's claims (a boolean metric that the
        claims table reads) and glue it as ``"confirmed"`` or ``"not confirmed"``."""
        holds = bool(holds)
        self.metrics[name] = holds
        self._glue(name, "confirmed" if holds else "not confirmed")
        self._save()
        return holds

    # -- closing -----------------------------------------------------------------------------
    def provenance(self) -> dict[str, Any]:
        """Scale, device, seed, versions, commit and wall time so far."""
        try:
            version = metadata.version("hessnoise")
        except metadata.PackageNotFoundError:
            version = "unknown"
        return {
            "scale": self.scale,
            "device": str(self.torch_device),
            "device_name": (
                torch.cuda.get_device_name(self.torch_device)
                if self.torch_device.type == "cuda"
                else cpu_name()
            ),
            "threads": torch.get_num_threads(),
            "seed": self.seed,
            "torch": torch.__version__,
            "hessnoise": version,
            "python": platform.python_version(),
            "commit": git_commit(repo_root()),
            "wall_time_s": round(time.perf_counter() - self.started, 2),
        }

    def finish(self) -> Any:
        """Write the final results file and return the provenance box (a Markdown display)."""
        prov = self.provenance()
        self._save(prov)
        rows = [
            ("scale", prov["scale"]),
            ("device", f"{prov['device']} ({prov['device_name']}, {prov['threads']} threads)"),
            ("seed", prov["seed"]),
            (
                "torch / hessnoise / Python",
                f"{prov['torch']} / {prov['hessnoise']} / {prov['python']}",
            ),
            ("git commit", f"`{prov['commit']}`"),
            ("wall time", f"{prov['wall_time_s']:.1f} s"),
            ("checks", self._checks_line()),
        ]
        table = "\n".join(f"| {k} | {v} |" for k, v in rows)
        return Markdown(
            ":::{admonition} Provenance\n:class: note\n\n"
            f"| | |\n|---|---|\n{table}\n\n"
            f"Results file: `_build/results/{self.scale}/{self.name}.json`.\n:::\n"
        )

    def _glue(self, name: str, value: Any) -> None:
        """Glue ``value`` under ``name`` once: a second glue of the same value (a check of a
        number just recorded) is skipped, one of another value is a bug and raises."""
        if name in self._glued:
            if isinstance(value, (str, int, float, bool)) and self._glued[name] != value:
                raise ValueError(f"glue key {name!r} was glued before with another value")
            return
        self._glued[name] = to_json(value) if not hasattr(value, "savefig") else name
        _glue(name, value)

    def _checks_line(self) -> str:
        tests = [c for c in self.checks if c.kind == "test"]
        consistency = [c for c in self.checks if c.kind == "consistency"]
        line = f"{sum(c.passed for c in tests)} of {len(tests)} tests passed"
        if consistency:
            held = sum(c.passed for c in consistency)
            line += f"; {held} of {len(consistency)} consistency checks held"
        return line

    def _save(self, provenance: dict[str, Any] | None = None) -> None:
        payload = {
            "chapter": self.name,
            "scale": self.scale,
            "device": str(self.torch_device),
            "checks": [c.__dict__ for c in self.checks],
            "metrics": self.metrics,
            "provenance": provenance or {"seed": self.seed, "finished": False},
        }
        write_json_atomic(self.path, payload)


class Markdown:
    """Markdown text that a notebook displays as such (``_repr_markdown_``), without IPython:
    the package also runs where IPython is not installed (a bare GPU image)."""

    def __init__(self, data: str) -> None:
        self.data = data

    def _repr_markdown_(self) -> str:
        return self.data

    def __repr__(self) -> str:
        return self.data


def markdown_table(headers: list[str], rows: list[list[Any]]) -> Markdown:
    """A Markdown table for display in a notebook cell (rendered by myst-nb)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return Markdown("\n".join(lines))


def load_results(results_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Every ``*.json`` results file in ``results_dir``, keyed by chapter name."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(Path(results_dir).glob("*.json")):
        with open(path) as fh:
            data = json.load(fh)
        out[data["chapter"]] = data
    return out


def status_of(results: dict[str, Any] | None, check_names: list[str]) -> str:
    """``'passed' | 'failed' | 'incomplete' | 'not run'`` for the named checks of a chapter."""
    if results is None:
        return "not run"
    by_name = {c["name"]: c for c in results["checks"]}
    if any(n in by_name and not by_name[n]["passed"] for n in check_names):
        return "failed"
    if all(n in by_name for n in check_names):
        return "passed"
    return "incomplete"


__all__ = [
    "CHECK_KINDS",
    "Chapter",
    "Check",
    "CheckFailed",
    "load_results",
    "repo_root",
    "status_of",
    "write_json_atomic",
]
