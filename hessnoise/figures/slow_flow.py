"""Figures and tables of the chapter "Theorem 1 on a real network: the slow flow along the
floor".  The η sweep and the S sweep keep the colours of the negative-eigenvalue chapter;
theory is black; seeds other than the first are lighter."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from hessnoise.experiments.slow_flow import Prediction, SlowFlowConfig
from hessnoise.experiments.slow_flow_fits import RunFit, SeedFit
from hessnoise.experiments.slow_flow_runs import FlowRun, GaussNewtonFactor, Invariance
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


def _sweeps(fit: SeedFit, cfg: SlowFlowConfig) -> list[tuple[str, str, str, list[RunFit]]]:
    eta_runs = sorted((r for r in fit.runs if r.batch_size == cfg.batch_size0), key=lambda r: r.C)
    s_runs = sorted((r for r in fit.runs if r.eta == cfg.eta0), key=lambda r: r.C)
    return [
        (f"η sweep at S = {cfg.batch_size0}", ETA_SWEEP, "o", eta_runs),
        (f"S sweep at η = {cfg.eta0:g}", BATCH_SWEEP, "s", s_runs),
    ]


@styled
def shares_figure(pred: Prediction, cfg: SlowFlowConfig) -> Figure:
    """Where the predicted drift comes from: left, the cumulative share of −𝒞‖P_Γ∇tr H‖²
    carried by the directions with λ_j below λ, against λ, with the relaxation scales of the
    window and of the flow; right, how much ‖P_Γ∇tr H‖² would change if the cut between
    normal and tangent directions were placed at λ."""
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10.5, 3.8))
    lam = pred.lam.cpu().numpy()
    order = np.argsort(lam)
    ax.step(lam[order], np.cumsum(pred.shares[order]), where="post", color=THEORY, lw=1.4,
            label="share of the predicted drift from λ_j ≤ λ")  # fmt: skip
    ax.axvline(1 / (2 * cfg.tau_window), color=SGD_NOISE, ls="--", lw=1,
               label=f"1/(2τ): equilibrates within the window τ = {cfg.tau_window:g}")  # fmt: skip
    ax.axvline(5 / cfg.flow_time, color=ISO_NOISE, ls=":", lw=1.2,
               label=f"5/t₁: relaxed by the flow (t₁ = {cfg.flow_time:g})")  # fmt: skip
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("Hessian eigenvalue λ at the floor")
    ax.set_ylabel("cumulative share of the drift")
    ax.legend(fontsize=7, loc="upper left")
    cuts = np.geomspace(max(lam.min() / 10, 1e-12), lam.max(), 200)
    change = [max(pred.cut_change(c), 1e-18) for c in cuts]
    ax2.plot(cuts, change, color=THEORY, lw=1.4)
    ax2.axvline(lam.min(), color=REFERENCE, ls=":", lw=1, label="smallest non-degenerate λ")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_ylim(1e-6, None)
    ax2.set_xlabel("cut: eigenvalues below it counted as tangent")
    ax2.set_ylabel("relative change of ‖P_Γ∇tr H‖²")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    return fig


@styled
def rate_figure(fits: Sequence[SeedFit], cfg: SlowFlowConfig, tolerance: float) -> Figure:
    """Measured initial drift rate over the finite-η prediction against 𝒞: left, with the
    gradient-flow limit map (filled; open: over the leading-order prediction); right, with
    Gauss–Newton (filled), the limit map's points repeated in grey."""
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10.5, 4.0), sharey=True)
    for k, fit in enumerate(fits):
        alpha = 1.0 if k == 0 else 0.45
        for label, colour, marker, runs in _sweeps(fit, cfg):
            c = np.array([r.C for r in runs])
            tag = f"{label}" if k == 0 else None
            ax.errorbar(c, [r.ratio.value for r in runs], yerr=[r.ratio.se for r in runs],
                        fmt=marker, color=colour, ms=5, capsize=2, alpha=alpha, zorder=3,
                        label=f"{tag}: over finite-η" if tag else None)  # fmt: skip
            ax.scatter(c * 1.04, [r.leading_ratio.value for r in runs], marker=marker,
                       facecolors="none", edgecolors=colour, s=30, alpha=alpha, zorder=2,
                       label=f"{tag}: over leading order" if tag else None)  # fmt: skip
            ax2.errorbar(c, [r.gn_ratio.value for r in runs], yerr=[r.gn_ratio.se for r in runs],
                         fmt=marker, color=colour, ms=5, capsize=2, alpha=alpha, zorder=3,
                         label=f"{tag}, Gauss–Newton" if tag else None)  # fmt: skip
            ax2.scatter(c, [r.ratio.value for r in runs], marker=marker, color=REFERENCE, s=14,
                        alpha=alpha, zorder=2,
                        label="limit map (left)" if k == 0 and marker == "o" else None)  # fmt: skip
    for a in (ax, ax2):
        a.axhline(1.0, color=THEORY, lw=1.2)
        a.axhspan(1 - tolerance, 1 + tolerance, color="#eeeeee", zorder=0,
                  label=f"±{tolerance:.0%}" if a is ax else None)  # fmt: skip
        a.set_xscale("log")
        a.xaxis.set_minor_formatter(NullFormatter())  # minor labels collide
        a.set_xlabel(r"noise scale $\mathcal{C}$ = η/(4S)")
    ax.set_ylabel("measured d tr H(Φ)/dτ over prediction")
    ax.set_title("gradient-flow limit map Φ", fontsize=9)
    ax2.set_title("Gauss–Newton projection", fontsize=9)
    ax.legend(fontsize=7)
    ax2.legend(fontsize=7)
    fig.tight_layout()
    return fig


@styled
def series_figure(run: FlowRun, pred: Prediction) -> Figure:
    """The centre run at dense times: −Δtr H against τ at the limit map (filled) and at the
    Gauss–Newton map (open), replica means with standard errors, against the slow flow
    (solid) and the Gauss–Newton map's second-order prediction (dashed)."""
    fig, ax = plt.subplots(figsize=(6.8, 4.0))
    t = run.taus
    r = run.gf.shape[0]
    for y, colour, face, lab in ((run.gf, THEORY, THEORY, "limit map Φ (gradient flow)"),
                                 (run.gn, SGD_NOISE, "none", "Gauss–Newton")):  # fmt: skip
        m = -y[:, 1:].mean(0)
        se = y[:, 1:].std(0, ddof=1) / np.sqrt(r)
        ax.errorbar(t, m, yerr=se, fmt="o", color=colour, mfc=face, ms=6, capsize=2, label=lab)
    grid = np.geomspace(t.min() / 1.5, t.max() * 1.2, 100)
    rate = pred.rate(run.eta, run.batch_size)
    ax.plot(grid, -rate * grid, color=THEORY, lw=1.2, label="slow flow, finite η")
    ax.plot(grid, -rate * grid - pred.gn_excess(run.eta, run.batch_size, grid), color=SGD_NOISE,
            ls="--", lw=1.2, label="Gauss–Newton, second order (twice Φ's move)")  # fmt: skip
    log_axes(ax)
    ax.set_xlabel("SGD time τ = ηt")
    ax.set_ylabel("decrease of the floor's trace, tr H(θ*) − tr H")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def runs_table(fits: Sequence[SeedFit]) -> Any:
    """Every run of every seed: measured and predicted rates, their ratios, the Gauss–Newton
    map's ratio and the direction of the displacement."""
    rows = [
        [f.seed, f"{r.eta:g}", r.batch_size, f"{r.C:.2e}", f"{r.rate.value:.3e} ± {r.rate.se:.1e}",
         f"{r.predicted:.3e}", f"{r.leading:.3e}", f"{r.ratio:.3f}", f"{r.leading_ratio:.3f}",
         f"{r.gn_ratio:.2f}", f"{r.cosine:.3f}"]
        for f in fits
        for r in sorted(f.runs, key=lambda r: (r.C, r.eta))
    ]  # fmt: skip
    headers = ["seed", "η", "S", "𝒞", "d tr H(Φ)/dτ", "finite-η", "leading order",
               "ratio", "ratio (leading)", "Gauss–Newton ratio", "cosine"]  # fmt: skip
    return markdown_table(headers, rows)


def seeds_table(fits: Sequence[SeedFit], preds: Sequence[Prediction]) -> Any:
    """Per seed: the floor's trace and ‖P_Γ∇tr H‖², the ratios at the smallest 𝒞, the growth
    of the ratio with 𝒞, the collapse test and the smallest cosine."""
    rows = [
        [f.seed, f"{p.trace:.3f}", f"{p.grad_sq:.3f}", f"{p.normal_grad_sq:.0f}",
         f"{f.drift_ratio:.3f}", f"{f.leading_ratio:.3f}", f"{f.slope:.0f}",
         f"{f.collapse_z:.2f} ({f.collapse_raw_z:.2f})", f"{100 * f.resolution:.0f} %",
         f"{f.cosine:.3f}"]
        for f, p in zip(fits, preds, strict=True)
    ]  # fmt: skip
    headers = ["seed", "tr H(θ*)", "‖P_Γ∇tr H‖²", "normal part of ‖∇tr H‖²",
               "ratio at smallest 𝒞", "ratio (leading)", "d ratio / d𝒞",
               "collapse z (raw rates)", "detectable difference", "smallest cosine"]  # fmt: skip
    return markdown_table(headers, rows)


def gauss_newton_table(gnf: GaussNewtonFactor) -> Any:
    """Gauss–Newton's and the limit map's moves of tr H over the second-order move, per
    eigendirection and displacement size."""
    rows = [
        [f"{lam:.3g}", f"{e:g}", f"{g:.3f}", f"{m:.4f}"]
        for lam, gn_row, lim_row in zip(gnf.lam, gnf.gn, gnf.limit, strict=True)
        for e, g, m in zip(gnf.eps, gn_row, lim_row, strict=True)
    ]
    headers = ["λ_j", "ε", "Gauss–Newton / second order", "limit map / second order"]
    return markdown_table(headers, rows)


def invariance_table(inv: Invariance) -> Any:
    """The limit map of one state at the three flow times of :func:`invariance`."""
    rows = [
        [f"{t:g}", f"{r:.3f}", f"{y:.5f}"]
        for t, r, y in zip(inv.flow_times, inv.remainders, inv.traces, strict=True)
    ]
    headers = ["flow time t₁", "|d| left to the second-order term", "tr H(Φ) − tr H(θ*)"]
    return markdown_table(headers, rows)
