r"""Figures of the chapter "Negative eigenvalues and the training loss" (Section 4.1, App. A.3,
Fig. 2(a)), in the look of :mod:`hessnoise.plots`: one function per figure, each returning a
matplotlib ``Figure`` with labelled axes, a legend, and the theory beside the measurement.
The η sweep is drawn in red, the batch-size sweep in blue, theory in black.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from hessnoise.experiments.negative_eigenvalues import (
    PAPER_SLOPE,
    A3Analysis,
    CurvatureProbe,
    Floor,
    RunResult,
    Sweep,
)
from hessnoise.plots import ISO_BLUE, SGD_RED, THEORY, style

GREY = "#8a8a8a"


def _log_axes(ax, *, dense: bool = False) -> None:
    """Log scales on both axes, labels on the decades only (minor labels collide); with
    ``dense``, for data spanning about a decade, labels at 1, 2 and 5 times each power of ten."""
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_minor_formatter(NullFormatter())
        if dense:
            axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def _sweep_points(sw: Sweep) -> list[tuple[str, str, str, list[RunResult]]]:
    """(label, colour, marker, runs) for the η sweep and the S sweep, centre in both."""
    s0 = sw.eta_sweep[0].batch_size
    eta0 = sw.batch_sweep[0].eta
    return [
        (f"η sweep at S = {s0}", SGD_RED, "o", sw.eta_sweep),
        (f"S sweep at η = {eta0:g}", ISO_BLUE, "s", sw.batch_sweep),
    ]


def floor_spectrum_figure(floor: Floor, snapshot: np.ndarray | None, n_constraints: int) -> Figure:
    """|λ| in descending order on a log axis: the floor's spectrum, with the rank N(K − 1) that
    an interpolating floor allows, and one SGD snapshot's positive and negative eigenvalues."""
    style()
    fig, ax = plt.subplots(figsize=(8, 3.6))
    lam = np.sort(floor.eigenvalues.numpy())[::-1]
    floor_abs = np.maximum(np.abs(lam), 1e-18)
    ax.plot(np.arange(lam.size), floor_abs, color=THEORY, lw=1.5, label="floor θ*: |λ|")
    if snapshot is not None:
        pos = np.sort(snapshot[snapshot > 0])[::-1]
        neg = np.sort(-snapshot[snapshot < 0])[::-1]
        ax.plot(np.arange(pos.size), pos, color=ISO_BLUE, lw=1, label="SGD snapshot: λ > 0")
        ax.plot(
            np.arange(neg.size),
            neg,
            color=SGD_RED,
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
    ax.axhline(floor.zero_tol, color=GREY, ls=":", lw=1, label="numerical zero P·ε·max|λ|")
    ax.set_yscale("log")
    ax.set_ylim(1e-17, floor_abs.max() * 5)
    ax.set_xlabel("index, by decreasing |λ|")
    ax.set_ylabel("Hessian eigenvalue magnitude |λ|")
    ax.legend(fontsize=7.5, loc="upper right")
    fig.tight_layout()
    return fig


def excess_loss_figure(sw: Sweep, trace_floor: float) -> Figure:
    """⟨L⟩ − L* against 𝒞 = ηκ/4 on log axes, with A.3's 𝒞·tr H at the floor (line) and with
    each run's own mean trace (open markers)."""
    style()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    cs = np.array([r.C for r in sw.runs])
    grid = np.geomspace(cs.min() / 1.5, cs.max() * 1.5, 50)
    ax.plot(grid, grid * trace_floor, color=THEORY, lw=1.2, label=r"A.3: $\mathcal{C}$ · tr H(θ*)")
    for label, colour, marker, runs in _sweep_points(sw):
        c = np.array([r.C for r in runs])
        ax.errorbar(
            c,
            [r.excess for r in runs],
            yerr=[r.excess_se for r in runs],
            fmt=marker,
            color=colour,
            ms=6,
            capsize=2,
            zorder=3,
            label=f"measured, {label}",
        )
        ax.scatter(
            c,
            [r.excess_a3 for r in runs],
            marker=marker,
            facecolors="none",
            edgecolors=colour,
            s=90,
            zorder=2,
            label=f"A.3 with the run's mean trace, {label}",
        )
    _log_axes(ax, dense=True)
    ax.set_xlabel(r"noise scale $\mathcal{C}$ = ηκ/4 = η/(4S)")
    ax.set_ylabel("excess loss ⟨L⟩ − L* (nats)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def fig2a_figure(sw: Sweep, an: A3Analysis) -> Figure:
    """Fig. 2(a): ⟨Σλ₋⟩ against ⟨L⟩ − L* with the paper's line y = wx + b, the two-term law
    y = a√x + bx and the paper's slope; right, the same on log axes against slopes 1 and ½."""
    style()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4.0))
    xmax = an.x.max() * 1.1
    grid = np.linspace(0, xmax, 200)
    for label, colour, marker, runs in _sweep_points(sw):
        x = [r.excess for r in runs]
        y = [r.sum_negative for r in runs]
        e = [r.sum_negative_se for r in runs]
        for a in (ax, ax2):
            a.errorbar(
                x,
                np.abs(y) if a is ax2 else y,
                yerr=e,
                fmt=marker,
                color=colour,
                ms=6,
                capsize=2,
                zorder=3,
                label=label,
            )
    line = an.line
    ax.plot(
        grid,
        line.slope * grid + line.intercept,
        color=THEORY,
        lw=1.2,
        label=f"fit y = wx + b: w = {line.slope:.1f}, b = {line.intercept:.3f}",
    )
    ax.plot(
        grid,
        an.a_sqrt.value * np.sqrt(grid) + an.b_lin.value * grid,
        color=THEORY,
        ls="--",
        lw=1.2,
        label=f"fit y = a√x + bx: a = {an.a_sqrt.value:.2f}, b = {an.b_lin.value:.1f}",
    )
    ax.plot(
        grid,
        PAPER_SLOPE * grid,
        color=GREY,
        ls=":",
        lw=1.2,
        label=f"paper (MNIST): y = {PAPER_SLOPE:g}x",
    )
    ax.axhline(0, color=GREY, lw=0.6)
    ax.set_xlim(0, xmax)
    ax.set_xlabel("excess loss ⟨L⟩ − L* (nats)")
    ax.set_ylabel("⟨sum of negative eigenvalues⟩ Σλ₋")
    ax.legend(fontsize=7)
    lg = np.geomspace(an.x.min() / 1.3, an.x.max() * 1.3, 50)
    x0, y0 = np.exp(np.log(an.x).mean()), np.exp(np.log(np.abs(an.y)).mean())
    ax2.plot(lg, y0 * (lg / x0), color=THEORY, ls=":", lw=1.2, label="slope 1 (A.3: y ∝ x)")
    ax2.plot(lg, y0 * (lg / x0) ** 0.5, color=GREY, ls=":", lw=1.2, label="slope ½ (curved floor)")
    ax2.plot(
        lg,
        y0 * (lg / x0) ** an.exponent.value,
        color=THEORY,
        lw=1.2,
        label=f"fit: slope {an.exponent.value:.2f}",
    )
    _log_axes(ax2, dense=True)
    ax2.set_xlabel("excess loss ⟨L⟩ − L* (nats)")
    ax2.set_ylabel("|⟨Σλ₋⟩|")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    return fig


def curvature_probe_figure(probe: CurvatureProbe, sw: Sweep | None = None) -> Figure:
    """|Σλ₋| at frozen displacements √𝒞·u from the floor against 𝒞: exact spectra, the
    first-order (√𝒞) expansion, its floor-curvature part, and a ∝ 𝒞 line (A.3 on a flat floor);
    the SGD runs at their 𝒞 for comparison."""
    style()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    cs = probe.cs
    ax.plot(
        cs,
        np.abs(probe.exact),
        "o",
        color=THEORY,
        ms=6,
        zorder=3,
        label=r"exact spectrum at θ* + √$\mathcal{C}$·u",
    )
    ax.plot(
        cs,
        np.abs(probe.linear),
        color=THEORY,
        lw=1.2,
        label=r"first order: s₋(H* + √$\mathcal{C}$ ∂ᵤH)",
    )
    ax.plot(
        cs,
        np.abs(probe.floor_term),
        color=SGD_RED,
        ls="--",
        lw=1.2,
        label=r"floor curvature alone: √$\mathcal{C}$ s₋(N⊤∂ᵤH N)",
    )
    ax.plot(
        cs,
        np.abs(probe.exact[-1]) * cs / cs[-1],
        color=GREY,
        ls=":",
        lw=1.2,
        label=r"∝ $\mathcal{C}$ (A.3 on a flat floor)",
    )
    if sw is not None:
        for label, colour, marker, runs in _sweep_points(sw):
            ax.scatter(
                [r.C for r in runs],
                [abs(r.sum_negative) for r in runs],
                marker=marker,
                facecolors="none",
                edgecolors=colour,
                s=50,
                zorder=2,
                label=f"SGD, sampled labels, {label}",
            )
    _log_axes(ax)
    ax.set_xlabel(r"noise scale $\mathcal{C}$ (displacement ⟨θᵢ²⟩ = 2$\mathcal{C}$)")
    ax.set_ylabel("|sum of negative eigenvalues| |Σλ₋|")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
