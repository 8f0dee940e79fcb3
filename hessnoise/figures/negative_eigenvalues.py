"""Figures and tables of the chapter "Negative eigenvalues and the training loss" (Section 4.1,
App. A.3, Fig. 2(a)).  The η sweep and the batch-size sweep have colours of their own; theory
is black; seeds other than the first are drawn lighter."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from hessnoise.experiments.a3_fits import A3Analysis
from hessnoise.experiments.floor import N_CLASSES, Floor, FloorConfig, Problem
from hessnoise.experiments.negative_eigenvalues import PAPER_SLOPE, RunResult, SeedResult, Sweep
from hessnoise.figures.style import (
    BATCH_SWEEP,
    ETA_SWEEP,
    ISO_NOISE,
    REFERENCE,
    SGD_NOISE,
    THEORY,
    log_axes,
    styled,
)
from hessnoise.report import markdown_table


def sweep_points(sw: Sweep) -> list[tuple[str, str, str, list[RunResult]]]:
    """(label, colour, marker, runs) for the η sweep and the S sweep, centre in both."""
    s0 = sw.eta_sweep[0].batch_size
    eta0 = sw.batch_sweep[0].eta
    return [
        (f"η sweep at S = {s0}", ETA_SWEEP, "o", sw.eta_sweep),
        (f"S sweep at η = {eta0:g}", BATCH_SWEEP, "s", sw.batch_sweep),
    ]


@styled
def floor_spectrum_figure(floor: Floor, snapshot: np.ndarray | None, n_constraints: int) -> Figure:
    """|λ| in descending order on a log axis: the floor's spectrum, with the rank N(K − 1) that
    an interpolating floor allows, and one SGD snapshot's positive and negative eigenvalues."""
    fig, ax = plt.subplots(figsize=(8, 3.6))
    lam = np.sort(floor.eigenvalues.numpy())[::-1]
    floor_abs = np.maximum(np.abs(lam), 1e-18)
    ax.plot(np.arange(lam.size), floor_abs, color=THEORY, lw=1.5, label="floor θ*: |λ|")
    if snapshot is not None:
        pos = np.sort(snapshot[snapshot > 0])[::-1]
        neg = np.sort(-snapshot[snapshot < 0])[::-1]
        ax.plot(np.arange(pos.size), pos, color=ISO_NOISE, lw=1, label="SGD snapshot: λ > 0")
        ax.plot(
            np.arange(neg.size),
            neg,
            color=SGD_NOISE,
            lw=1,
            label=f"SGD snapshot: |λ| of λ < 0 ({neg.size})",
        )
    ax.axvline(
        n_constraints,
        color=THEORY,
        ls="--",
        lw=1,
        label=f"N(K − 1) = {n_constraints}: rank of H at an interpolating floor",
    )
    ax.axhline(floor.zero_tol, color=REFERENCE, ls=":", lw=1, label="numerical zero P·ε·max|λ|")
    ax.set_yscale("log")
    ax.set_ylim(1e-17, floor_abs.max() * 5)
    ax.set_xlabel("index, by decreasing |λ|")
    ax.set_ylabel("Hessian eigenvalue magnitude |λ|")
    ax.legend(fontsize=7.5, loc="upper right")
    fig.tight_layout()
    return fig


@styled
def excess_loss_figure(results: Sequence[SeedResult]) -> Figure:
    """A.3's first half over every run of every seed: ⟨L⟩ − L* over 𝒞·tr H, with the trace
    taken where the run is (filled) and at the floor, as printed (open), against 𝒞."""
    fig, ax = plt.subplots(figsize=(6.8, 4.0))
    for k, res in enumerate(results):
        for label, colour, marker, runs in sweep_points(res.sampled):
            c = np.array([r.C for r in runs])
            running = [r.excess / r.excess_a3 for r in runs]
            printed = [r.excess / (r.C * res.floor.trace) for r in runs]
            err = [r.excess_se / r.excess_a3 for r in runs]
            tag = f", {label}" if k == 0 else None
            ax.errorbar(c, running, yerr=err, fmt=marker, color=colour, ms=5, capsize=2,
                        alpha=1 if k == 0 else 0.55, label=f"trace where the run is{tag}" if tag
                        else None, zorder=3)  # fmt: skip
            ax.scatter(c, printed, marker=marker, facecolors="none", edgecolors=colour, s=40,
                       alpha=1 if k == 0 else 0.55, zorder=2,
                       label=f"trace at the floor{tag}" if tag else None)  # fmt: skip
    ax.axhline(1.0, color=THEORY, lw=1.2, label=r"A.3: ⟨L⟩ − L* = $\mathcal{C}$ tr H")
    ax.set_xscale("log")
    ax.set_xlabel(r"noise scale $\mathcal{C}$ = ηκ/4 = η/(4S)")
    ax.set_ylabel(r"(⟨L⟩ − L*) / ($\mathcal{C}$ tr H)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


@styled
def fig2a_figure(results: Sequence[SeedResult], analyses: Sequence[A3Analysis]) -> Figure:
    """Fig. 2(a): ⟨Σλ₋⟩ against ⟨L⟩ − L* for the first seed with the paper's line y = wx + b,
    the two-term law y = a√x + bx and the paper's slope, the other seeds lighter; right, all
    seeds on log axes, each with its fitted exponent, against slopes 1 and ½."""
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10.5, 4.1))
    an0 = analyses[0]
    xmax = max(a.x.max() for a in analyses) * 1.1
    for k, res in enumerate(results):
        for label, colour, marker, runs in sweep_points(res.sampled):
            x = [r.excess for r in runs]
            y = [r.sum_negative for r in runs]
            e = [r.sum_negative_se for r in runs]
            kw = {"alpha": 1.0 if k == 0 else 0.4, "ms": 6 if k == 0 else 4, "capsize": 2}
            lab = f"{label}, seed {res.seed}" if k == 0 else None
            ax.errorbar(x, y, yerr=e, fmt=marker, color=colour, zorder=3, label=lab, **kw)
            ax2.errorbar(x, np.abs(y), yerr=e, fmt=marker, color=colour, zorder=3, **kw)
    grid = np.linspace(0, xmax, 200)
    line = an0.line
    ax.plot(grid, line.slope * grid + line.intercept, color=THEORY, lw=1.2,
            label=f"fit y = wx + b: w = {line.slope:.1f}, b = {line.intercept:.3f}")  # fmt: skip
    ax.plot(grid, an0.a_sqrt.value * np.sqrt(grid) + an0.b_lin.value * grid, color=THEORY,
            ls="--", lw=1.2, label=f"fit y = a√x + bx: a = {an0.a_sqrt.value:.2f}, "
            f"b = {an0.b_lin.value:.1f}")  # fmt: skip
    ax.plot(grid, PAPER_SLOPE * grid, color=REFERENCE, ls=":", lw=1.2,
            label=f"paper (MNIST): y = {PAPER_SLOPE:g}x")  # fmt: skip
    ax.axhline(0, color=REFERENCE, lw=0.6)
    ax.set_xlim(0, xmax)
    ax.set_xlabel("excess loss ⟨L⟩ − L* (nats)")
    ax.set_ylabel("⟨sum of negative eigenvalues⟩ Σλ₋")
    ax.legend(fontsize=7)
    allx = np.concatenate([a.x for a in analyses])
    ally = np.abs(np.concatenate([a.y for a in analyses]))
    lg = np.geomspace(allx.min() / 1.3, allx.max() * 1.3, 50)
    x0, y0 = np.exp(np.log(allx).mean()), np.exp(np.log(ally).mean())
    ax2.plot(lg, y0 * (lg / x0), color=THEORY, ls=":", lw=1.2, label="slope 1 (A.3: y ∝ x)")
    ax2.plot(lg, y0 * (lg / x0) ** 0.5, color=REFERENCE, ls=":", lw=1.2, label="slope ½")
    for res, an in zip(results, analyses, strict=True):
        xs = np.geomspace(an.x.min(), an.x.max(), 20)
        c = np.exp(np.log(np.abs(an.y)).mean() - an.exponent.value * np.log(an.x).mean())
        ax2.plot(xs, c * xs**an.exponent.value, color=THEORY, lw=1,
                 label=f"seed {res.seed}: slope {an.exponent.value:.2f}")  # fmt: skip
    log_axes(ax2, dense=True)
    ax2.set_xlabel("excess loss ⟨L⟩ − L* (nats)")
    ax2.set_ylabel("|⟨Σλ₋⟩|")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    return fig


def network_table(cfg: FloorConfig, problem: Problem, method: str) -> Any:
    """The data, the network and how its floor was reached."""
    side = f"{cfg.size}×{cfg.size} by average pooling" if cfg.size else "at full resolution"
    rows = [
        ["data", f"{cfg.n} {problem.dataset or cfg.dataset} training images, {side}, "
                 "class-balanced"],
        ["network", f"{problem.x.shape[1]} → {cfg.hidden} ({cfg.activation}) → {N_CLASSES}, "
                    "float64"],
        ["parameters P", f"{problem.n_params:,}"],
        ["interpolation constraints N(K − 1)", f"{cfg.n_constraints:,}"],
        ["loss", f"cross-entropy with label smoothing ε = {cfg.eps}"],
        ["floor reached by", method],
    ]  # fmt: skip
    return markdown_table(["", "value"], rows)


def floors_table(results: Sequence[SeedResult], target_entropy: float) -> Any:
    """One row per seed: how well its floor interpolates, its rank, trace and extreme
    non-degenerate eigenvalues."""
    rows = [
        [r.seed, f"{r.floor.loss - target_entropy:.1e}", f"{r.floor.max_sample_grad:.1e}",
         r.floor.rank, f"{r.floor.trace:.3f}", f"{r.floor.eigenvalues.max().item():.3f}",
         f"{r.floor.gap:.1e}"]
        for r in results
    ]  # fmt: skip
    headers = ["seed", "L* − H(q)", "max ‖∇ℓₖ‖", "rank", "tr H(θ*)", "λ_max", "smallest λ > 0"]
    return markdown_table(headers, rows)


def minibatch_table(results: Sequence[SeedResult]) -> Any:
    """The paper's protocol: per seed and run, κ, the excess loss and the negative spectrum."""
    rows = [
        [res.seed, f"{r.eta:g}", r.batch_size, f"{r.kappa:.4f}", f"{r.excess:.2e}",
         f"{r.sum_negative:.2e}", int(r.n_neg.max())]
        for res in results
        for r in res.minibatch.runs
    ]  # fmt: skip
    headers = ["seed", "η", "S", "κ = (1/S)(1 − S/M)", "⟨L⟩ − L*", "⟨Σλ₋⟩", "negative eigenvalues"]
    return markdown_table(headers, rows)


def runs_table(results: Sequence[SeedResult], budgets: Sequence[np.ndarray]) -> Any:
    """Sampled-label runs of every seed: A.3's first half with its error budget, the
    negative spectrum, the stationarity diagnostic and the drift along the valley."""
    rows = []
    for res, budget in zip(results, budgets, strict=True):
        for r, b in zip(res.sampled.runs, budget, strict=True):
            gap = r.fdr_gap
            rows.append(
                [res.seed, f"{r.eta:g}", r.batch_size, f"{r.C:.2e}",
                 f"{r.excess:.3e} ± {r.excess_se:.1e}", f"{r.C * res.floor.trace:.3e}",
                 f"{r.excess_a3:.3e}", f"{100 * b:.0f} %",
                 f"{r.sum_negative:.3f} ± {r.sum_negative_se:.3f}", f"{r.n_neg.float().mean():.0f}",
                 f"{100 * gap.value:+.1f} ± {100 * gap.se:.1f} %", f"{100 * r.trace_drift:+.1f} %",
                 f"{100 * (r.end_floor_trace / res.floor.trace - 1):+.1f} %"]
            )  # fmt: skip
    headers = ["seed", "η", "S", "𝒞 = η/4S", "⟨L⟩ − L*", "𝒞·tr H(θ*)", "𝒞·⟨tr H⟩",
               "error budget", "⟨Σλ₋⟩", "negative eigenvalues", "FDR gap",
               "trace drift in window", "floor trace at the end"]  # fmt: skip
    return markdown_table(headers, rows)


def seeds_table(results: Sequence[SeedResult], analyses: Sequence[A3Analysis]) -> Any:
    """Per seed: the paper's line, the exponent, the √x coefficient and the collapse test,
    with 95 % bootstrap intervals."""
    rows = [
        [res.seed, f"{a.slope:.2f}", f"{a.intercept:.4f}", f"{a.r2.value:.4f}",
         f"{a.exponent:.3f}", f"{a.a_sqrt:.3f}", "yes" if a.proportional else "no",
         f"{a.collapse.slope_eta.value:.2f} / {a.collapse.slope_batch.value:.2f}",
         f"{a.collapse.z:.2f}",
         f"{a.collapse.detectable:.2f} ({100 * a.collapse.resolution:.0f} %)"]
        for res, a in zip(results, analyses, strict=True)
    ]  # fmt: skip
    headers = [
        "seed",
        "slope w",
        "intercept b",
        "R²",
        "exponent p",
        "a (√x term)",
        "consistent with A.3",
        "w_η / w_S",
        "collapse z",
        "detectable difference",
    ]
    return markdown_table(headers, rows)
