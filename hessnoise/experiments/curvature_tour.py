"""The book's page on the package: a trained network whose Hessian every method is run on and
checked against exact values, and the benchmark table from the last ``make bench``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hessnoise import data, models, train
from hessnoise._validate import positive_int
from hessnoise.curvature import hutchinson, hutchpp
from hessnoise.curvature.probes import Matvec
from hessnoise.params import FlatNet
from hessnoise.scales import by_scale


@dataclass(frozen=True)
class TourConfig:
    """A tanh MLP ``d_in → hidden → 10`` on ``n`` images, briefly trained with L-BFGS."""

    dataset: str
    n: int
    size: int | None
    hidden: int
    lbfgs_iter: int
    seeds: int
    budget: int

    def __post_init__(self) -> None:
        for name in ("n", "hidden", "lbfgs_iter", "seeds", "budget"):
            positive_int(name, getattr(self, name))

    @classmethod
    def for_scale(cls, scale: str) -> TourConfig:
        return by_scale(
            scale,
            smoke=cls("digits", 150, None, 8, 30, 40, 30),
            small=cls("digits", 600, None, 16, 100, 200, 60),
            paper=cls("fashion-mnist", 500, 14, 30, 200, 400, 300),
        )


def required_data(scale: str) -> dict[str, bool]:
    """The dataset this page reads at ``scale`` (never downloaded); the book command checks it
    before any chapter runs (see :func:`hessnoise.experiments.floor.required_data`)."""
    return {TourConfig.for_scale(scale).dataset: False}


def setup(
    cfg: TourConfig, seed: int
) -> tuple[nn.Module, nn.Module, list[tuple[torch.Tensor, torch.Tensor]]]:
    """The model (briefly trained), the loss, and the data as uneven batches."""
    x, y = data.load(cfg.dataset, cfg.n, size=cfg.size, seed=seed)
    net = FlatNet(models.mlp(x.shape[1], [cfg.hidden], 10, activation="tanh", seed=seed))
    loss = nn.CrossEntropyLoss(label_smoothing=0.1)
    fit = train.minimize(lambda th: loss(net(th, x), y), net.theta0(), max_iter=cfg.lbfgs_iter)
    net.write(fit.theta)
    cuts = [cfg.n // 3, cfg.n // 7, cfg.n - cfg.n // 3 - cfg.n // 7]  # unequal on purpose
    return net.module, loss, list(zip(x.split(cuts), y.split(cuts), strict=True))


def estimator_study(matvec: Matvec, dim: int, budget: int, seeds: int) -> dict[str, dict[str, Any]]:
    """Hutchinson and Hutch++ at one budget over ``seeds`` seeds: the estimates, the reported
    standard errors, and their mean."""
    out = {}
    for name, est in (("Hutchinson", hutchinson), ("Hutch++", hutchpp)):
        runs = [est(matvec, dim, budget=budget, seed=s) for s in range(seeds)]
        values = torch.tensor([r.value for r in runs])
        out[name] = {
            "values": values,
            "se_reported": torch.tensor([r.se for r in runs]).pow(2).mean().sqrt().item(),
            "std_empirical": values.std().item(),
            "mean": values.mean().item(),
            "se_of_mean": values.std().item() / seeds**0.5,
        }
    return out


@dataclass(frozen=True)
class EstimatorCheck:
    """An estimator over seeds against the exact trace: the bias of the mean in standard
    errors (``bias_z``) and the reported standard error over the spread over seeds
    (``se_ratio``, 1 for an honest estimator)."""

    name: str
    mean: float
    se_of_mean: float
    bias_z: float
    se_reported: float
    std_empirical: float

    @property
    def se_ratio(self) -> float:
        return self.se_reported / self.std_empirical


def estimator_checks(study: dict[str, dict[str, Any]], exact: float) -> list[EstimatorCheck]:
    """:class:`EstimatorCheck` for each estimator of :func:`estimator_study`."""
    return [
        EstimatorCheck(
            name=name,
            mean=s["mean"],
            se_of_mean=s["se_of_mean"],
            bias_z=abs(s["mean"] - exact) / s["se_of_mean"],
            se_reported=s["se_reported"],
            std_empirical=s["std_empirical"],
        )
        for name, s in study.items()
    ]


def lanczos_gaps(ritz: torch.Tensor, bounds: torch.Tensor, exact: torch.Tensor) -> float:
    """max over Ritz values of (distance to the nearest true eigenvalue − residual bound):
    ≤ 0 when every Ritz value lies within its bound."""
    return max(((exact - r).abs().min() - b).item() for r, b in zip(ritz, bounds, strict=True))


# Files the chapter reads besides the code, relative to the repository root, first found first
# used; the book command hashes them into the chapter's cache key (hessnoise.book).
BOOK_INPUTS = ("_build/bench/curvature.json", "book/data/curvature-bench.json")


def bench_results(root: Path) -> tuple[dict[str, Any], str]:
    """The last ``make bench`` results: ``_build/bench/curvature.json`` if it exists, else the
    snapshot committed in ``book/data/curvature-bench.json``; with where it came from."""
    whats = ("this machine's last `make bench`", "the snapshot committed with the book")
    for rel, what in zip(BOOK_INPUTS, whats, strict=True):
        path = root / rel
        if path.exists():
            with open(path) as fh:
                return json.load(fh), what
    raise FileNotFoundError("no benchmark results: run `make bench`")


def gpu_bench_results(root: Path) -> tuple[dict[str, Any], str] | None:
    """The last GPU benchmark (``make bench DEVICE=cuda``): ``_build/bench/curvature-cuda.json``
    if it exists, else the snapshot committed in ``book/data/curvature-bench-cuda.json``, with
    where it came from; ``None`` when there is neither (no GPU run yet)."""
    for path, what in (
        (root / "_build" / "bench" / "curvature-cuda.json", "this machine's last GPU benchmark"),
        (root / "book" / "data" / "curvature-bench-cuda.json", "the GPU snapshot in the book"),
    ):
        if path.exists():
            with open(path) as fh:
                return json.load(fh), what
    return None


def gpu_bench_source(found: tuple[dict[str, Any], str] | None) -> str:
    """Where the GPU column comes from, in words: the device, the date and the file, or that
    there is no GPU snapshot yet."""
    if found is None:
        return "no GPU snapshot yet"
    bench, what = found
    machine = bench["machine"]
    return f"{machine.get('gpu', 'a GPU')} (torch {machine['torch']}), {bench['date']}, {what}"
