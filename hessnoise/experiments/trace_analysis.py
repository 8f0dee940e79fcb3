r"""What the trace along projected paths shows, in plain numbers (Section 4.3, Fig. 3, Fig. 4).

* :func:`seed_fit` — one run: the slopes against the epoch, over its valley, of the trace at
  the projected points, of the scale-invariant trace, of the part of the trace in
  scale-invariant groups, of the trace at the SGD states and of the validation loss; the rank
  correlation of the trace with the validation loss; the largest λ_max.
* :func:`summarize` — the runs of one network over seeds: each slope's mean with Student's t
  interval across seeds and the fraction of seeds whose slope is negative, the correlation's
  mean and interval, and the edge-of-stability ratios λ_max·η/2 and λ_max·η/(2(1 + μ)).
* :func:`seed_curves` — per-seed series on a common epoch grid (for the figures).

**The cut.**  The slope is taken over a path's valley: the epochs from which on every epoch's
projection reached the threshold (:func:`~hessnoise.experiments.projected_paths.
valley_epochs`), a rule fixed before any trace was computed.  Before it the projections are
not minima, and the trace there belongs to the descent, not to the valley of Theorem 1.

Everything here reads finished runs and returns floats; nothing is computed on a network.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from hessnoise.experiments.trace_along_path import TraceRun
from hessnoise.stats import Interval, line_fit, t_interval


@dataclass(frozen=True)
class SeedFit:
    """One run over its valley (epochs ``first`` … ``last``, ``points`` of them).

    Slopes are per epoch: ``slope`` of the trace at the projected points (``slope_lo``,
    ``slope_hi``: the line fit's 95 % interval from the scatter of the points),
    ``relative_slope`` the same over the mean trace; ``invariant_slope`` of the
    scale-invariant trace and ``invariant_relative_slope``; ``bn_part_slope`` of the part of
    the trace in scale-invariant groups; ``sgd_slope`` of the trace at the SGD states of the
    same epochs; ``val_slope`` of the validation loss.  ``val_rho`` is Spearman's rank
    correlation of the trace with the validation loss over the points, ``val_p`` its p-value.
    ``lam_max`` is the largest Ritz value over the points and ``lam_max_residual`` its
    residual bound; ``trace_start`` and ``trace_end`` the fitted trace at the first and last
    epoch; ``rel_se`` the median standard error of a trace estimate over its value."""

    seed: int
    points: int
    first: int
    last: int
    slope: float
    slope_lo: float
    slope_hi: float
    relative_slope: float
    invariant_slope: float
    invariant_relative_slope: float
    bn_part_slope: float
    sgd_slope: float
    val_slope: float
    val_rho: float
    val_p: float
    lam_max: float
    lam_max_residual: float
    trace_start: float
    trace_end: float
    rel_se: float


def _series(run: TraceRun, kind: str = "projected") -> dict[str, np.ndarray]:
    pts = run.points(kind)
    inv = run.partition.invariant.numpy()
    return {
        "epoch": np.array(run.epochs, dtype=float),
        "trace": np.array([p.trace for p in pts]),
        "se": np.array([p.trace_se for p in pts]),
        "invariant": np.array([p.invariant for p in pts]),
        "bn_part": np.array([p.group_traces.numpy()[inv].sum() for p in pts]),
        "val": np.array(run.val_excess(kind)),
        "lam_max": np.array([p.lam_max for p in pts]),
        "lam_res": np.array([p.lam_max_residual for p in pts]),
    }


def seed_fit(run: TraceRun) -> SeedFit:
    """The :class:`SeedFit` of one run (at least three points)."""
    s, sgd = _series(run), _series(run, "sgd")
    x = s["epoch"]
    fit = line_fit(x, s["trace"])
    inv = line_fit(x, s["invariant"])
    rho, p = sps.spearmanr(s["trace"], s["val"])
    top = int(np.nanargmax(s["lam_max"])) if np.isfinite(s["lam_max"]).any() else None
    return SeedFit(
        seed=run.seed, points=len(x), first=int(x[0]), last=int(x[-1]),
        slope=fit.slope, slope_lo=fit.ci_slope[0], slope_hi=fit.ci_slope[1],
        relative_slope=fit.slope / s["trace"].mean(), invariant_slope=inv.slope,
        invariant_relative_slope=inv.slope / s["invariant"].mean(),
        bn_part_slope=line_fit(x, s["bn_part"]).slope if np.ptp(s["bn_part"]) else 0.0,
        sgd_slope=line_fit(x, sgd["trace"]).slope, val_slope=line_fit(x, s["val"]).slope,
        val_rho=float(rho), val_p=float(p),
        lam_max=float(s["lam_max"][top]) if top is not None else math.nan,
        lam_max_residual=float(s["lam_res"][top]) if top is not None else math.nan,
        trace_start=fit.intercept + fit.slope * x[0], trace_end=fit.intercept + fit.slope * x[-1],
        rel_se=float(np.median(s["se"] / s["trace"])),
    )  # fmt: skip


@dataclass(frozen=True)
class TraceSummary:
    """The runs of one network over ``seeds`` seeds.

    Each ``*_slope`` is the mean over seeds of the per-seed slope (per epoch) with its 95 %
    Student t interval across seeds, and ``frac_*`` the fraction of seeds whose slope is
    negative: ``trace`` at the projected points, ``relative`` the same over the mean trace,
    ``invariant`` the scale-invariant trace (and ``invariant_relative``), ``sgd`` the trace at
    the SGD states.  ``bn_share`` is the share of the fall of the trace that lies in the
    scale-invariant groups (mean over seeds of their slope over the slope of the trace).
    ``val_slope`` is the validation loss's slope, ``val_rho`` Spearman's correlation of the
    trace with the validation loss (mean over seeds, t interval cut to [−1, 1]),
    ``frac_val_rho_negative`` the fraction of seeds where it is negative.
    ``lambda_eta_over_2`` is the largest λ_max·η/2 over every projected point of every seed
    (the edge of stability of plain gradient descent is 1), ``lambda_eta_heavy_ball`` the same
    over 2(1 + μ)/η, the edge with momentum μ, and
    ``lam_max`` with ``lam_max_residual`` the Ritz value and residual bound it comes from.
    ``points`` is the fewest points of a run, ``first_min`` and ``first_max`` the range of the
    valleys' first epochs, ``rel_se`` the median relative standard error of a trace estimate."""

    name: str
    seeds: int
    points: int
    first_min: int
    first_max: int
    trace_slope: Interval
    frac_seeds_decreasing: float
    relative_slope: Interval
    invariant_slope: Interval
    frac_invariant_decreasing: float
    invariant_relative_slope: Interval
    bn_share: float
    sgd_slope: Interval
    frac_sgd_decreasing: float
    val_slope: Interval
    val_rho: Interval
    frac_val_rho_negative: float
    lam_max: float
    lam_max_residual: float
    lambda_eta_over_2: float
    lambda_eta_heavy_ball: float
    stability_edge: float
    stability_edge_heavy_ball: float
    rel_se: float

    @property
    def decreases(self) -> bool:
        """The trace falls along the path: the interval of its mean slope lies below zero."""
        return self.trace_slope.hi < 0

    @property
    def invariant_decreases(self) -> bool:
        return self.invariant_slope.hi < 0

    @property
    def val_anticorrelated(self) -> bool:
        """The trace and the validation loss move against each other: the interval of the
        mean rank correlation lies below zero."""
        return self.val_rho.hi < 0


def _interval(values: Sequence[float]) -> Interval:
    """The mean with a t interval across seeds; a single seed gives an undefined interval."""
    return t_interval(values) if len(values) > 1 else Interval(float(values[0]), math.nan,
                                                               math.nan)  # fmt: skip


def _clipped(iv: Interval) -> Interval:
    """A correlation's interval cut to [−1, 1], where a t interval can overshoot."""
    return Interval(iv.value, max(iv.lo, -1.0), min(iv.hi, 1.0))


def summarize(runs: Sequence[TraceRun]) -> TraceSummary:
    """The :class:`TraceSummary` of one network's runs."""
    fits = [seed_fit(r) for r in runs]
    cfg = runs[0].cfg

    def col(name: str) -> list[float]:
        return [getattr(f, name) for f in fits]

    def frac_negative(name: str) -> float:
        return float(np.mean([v < 0 for v in col(name)]))

    top = max(fits, key=lambda f: f.lam_max if math.isfinite(f.lam_max) else -math.inf)
    edge, edge_hb = 2 / cfg.lr, 2 * (1 + cfg.momentum) / cfg.lr
    shares = [f.bn_part_slope / f.slope for f in fits if f.slope]
    return TraceSummary(
        name=cfg.name, seeds=len(fits), points=min(col("points")),
        first_min=min(col("first")), first_max=max(col("first")),
        trace_slope=_interval(col("slope")), frac_seeds_decreasing=frac_negative("slope"),
        relative_slope=_interval(col("relative_slope")),
        invariant_slope=_interval(col("invariant_slope")),
        frac_invariant_decreasing=frac_negative("invariant_slope"),
        invariant_relative_slope=_interval(col("invariant_relative_slope")),
        bn_share=float(np.mean(shares)) if shares else math.nan,
        sgd_slope=_interval(col("sgd_slope")), frac_sgd_decreasing=frac_negative("sgd_slope"),
        val_slope=_interval(col("val_slope")), val_rho=_clipped(_interval(col("val_rho"))),
        frac_val_rho_negative=frac_negative("val_rho"),
        lam_max=top.lam_max, lam_max_residual=top.lam_max_residual,
        lambda_eta_over_2=top.lam_max / edge, lambda_eta_heavy_ball=top.lam_max / edge_hb,
        stability_edge=edge, stability_edge_heavy_ball=edge_hb,
        rel_se=float(np.median(col("rel_se"))),
    )  # fmt: skip


def headline_metrics(summaries: Sequence[TraceSummary]) -> dict[str, float | Interval]:
    """The numbers the claims table names, for the main network (the first): its slopes with
    their intervals, the seeds and the fraction falling, and the largest λ_max·η/2 and
    λ_max·η/2(1 + μ) over every network's projected points."""
    main = summaries[0]
    return {
        "trace_slope": main.trace_slope,
        "seeds": main.seeds,
        "frac_seeds_decreasing": main.frac_seeds_decreasing,
        "invariant_trace_slope": main.invariant_slope,
        "max_lambda_max_times_eta_over_2": max(s.lambda_eta_over_2 for s in summaries),
        "max_lambda_max_heavy_ball_ratio": max(s.lambda_eta_heavy_ball for s in summaries),
    }


@dataclass(frozen=True)
class SeedCurves:
    """Per-seed series interpolated on the integer epochs ``grid`` ``(E,)`` where every seed
    has points on both sides (no extrapolation): ``values`` ``(seeds, E)``, their mean and
    standard deviation over seeds ``(E,)``."""

    grid: np.ndarray
    values: np.ndarray
    mean: np.ndarray
    sd: np.ndarray


def seed_curves(
    runs: Sequence[TraceRun], what: str = "trace", kind: str = "projected"
) -> SeedCurves:
    """``what`` (``'trace'``, ``'invariant'``, ``'bn_part'``, ``'val'``, ``'lam_max'``) of each
    run on a common grid of epochs (the paper's Fig. 3 shows the mean and the standard deviation
    over initializations)."""
    series = [_series(r, kind) for r in runs]
    lo = max(s["epoch"][0] for s in series)
    hi = min(s["epoch"][-1] for s in series)
    grid = np.arange(math.ceil(lo), math.floor(hi) + 1, dtype=float)
    values = np.array([np.interp(grid, s["epoch"], s[what]) for s in series])
    sd = values.std(0, ddof=1) if len(series) > 1 else np.zeros_like(grid)
    return SeedCurves(grid, values, values.mean(0), sd)


@dataclass(frozen=True)
class LayerChange:
    """One module of a network between the first and the last point of the valleys (means over
    seeds): its name and class, whether its groups are scale-invariant, its weight norm and its
    block trace tr H_ll at both ends, the ratio of the block traces, and the ratio that norm
    growth alone predicts for scale-invariant groups, Σ_g tr H_gg·‖θ_g‖²_first/‖θ_g‖²_last over
    Σ_g tr H_gg (1 for other modules)."""

    module: str
    kind: str
    invariant: bool
    norm_first: float
    norm_last: float
    trace_first: float
    trace_last: float
    ratio: float
    predicted: float


def layer_changes(runs: Sequence[TraceRun]) -> list[LayerChange]:
    """:class:`LayerChange` per module of the runs' network."""
    part = runs[0].partition
    inv = part.invariant.numpy()
    first = [r.projected[0] for r in runs]
    last = [r.projected[-1] for r in runs]
    out = []
    for m, kind in zip(part.modules, part.kinds, strict=True):
        mask = np.array([layer == m for layer in part.layers])
        norms, traces, predicted = [], [], []
        for a, b in zip(first, last, strict=True):
            na, nb = a.group_norms.numpy()[mask], b.group_norms.numpy()[mask]
            ta, tb = a.group_traces.numpy()[mask], b.group_traces.numpy()[mask]
            # norm growth alone: tr H_gg ∝ 1/‖θ_g‖² on invariant groups, unchanged elsewhere
            factor = np.where(inv[mask], (na / nb) ** 2, 1.0)
            norms.append((np.sqrt((na**2).sum()), np.sqrt((nb**2).sum())))
            traces.append((ta.sum(), tb.sum()))
            predicted.append((ta * factor).sum() / ta.sum())
        n, t = np.mean(norms, axis=0), np.mean(traces, axis=0)
        out.append(LayerChange(m, kind, bool(inv[mask].any()), float(n[0]), float(n[1]),
                               float(t[0]), float(t[1]), float(t[1] / t[0]),
                               float(np.mean(predicted))))  # fmt: skip
    return out
