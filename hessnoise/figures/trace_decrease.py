"""Figures and tables of the chapter "SGD noise decreases the Hessian trace" (eq. 11,
Theorem 1, Fig. 2(b), momentum, label noise)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from hessnoise.experiments.trace_decrease import (
    DriftRun,
    Theorem1Check,
    leading_ratios,
    rate_leading,
    rate_paper,
)
from hessnoise.figures.style import ETA_SWEEP, SERIES, SGD_NOISE, THEORY, styled
from hessnoise.report import markdown_table


@styled
def eq11_figure(runs: Sequence[DriftRun], kappa: float) -> Figure:
    """Measured ⟨θᵢ²⟩ over its leading order ηκ/2 against ηλᵢ, with eq. 11's 2/(2 − ηλ)."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    x = np.linspace(1e-3, 1.95, 400)
    ax.plot(x, 2 / (2 - x), color=THEORY, label="eq. 11: 2/(2 − ηλ)")
    ax.axhline(1.0, color=THEORY, ls=":", label="leading order: 1")
    for i, marker in enumerate(["o", "s"]):
        xs = [r.eta * r.lam[i].item() for r in runs]
        ys = [r.theta_sq[i].item() / (r.eta * kappa / 2) for r in runs]
        ax.scatter(xs, ys, marker=marker, color=SERIES[i], zorder=3, label=f"measured, i = {i + 1}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("ηλᵢ")
    ax.set_ylabel("⟨θᵢ²⟩ / (ηκ/2)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


@styled
def fig2b(runs: Sequence[DriftRun], thm1: Theorem1Check, kappa: float, grad_sq: float) -> Figure:
    """Fig. 2(b): the change of trace against η², with the corrected and the printed Theorem 1,
    and (right) where the leading order stops holding."""
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    steps = runs[0].steps
    lead = [r for r in runs if r.eta_lam_max <= thm1.breakdown_eta_lam] or runs[:3]
    x = np.array([r.eta**2 for r in lead])
    y = np.array([-r.mean for r in lead])
    yerr = [2 * r.se for r in lead]
    ax.errorbar(x, y, yerr=yerr, fmt="o", color=SGD_NOISE, label="measured (±2 s.e.)", zorder=3)
    grid = np.linspace(0, x.max() * 1.05, 50)
    eta = np.sqrt(grid)
    ax.plot(
        grid,
        -rate_leading(eta, kappa, grad_sq) * steps,
        color=THEORY,
        label="Theorem 1, corrected: η²κ‖∇̂T‖²/4",
    )
    ax.plot(
        grid,
        -rate_paper(eta, kappa, grad_sq) * steps,
        color=THEORY,
        ls="--",
        label="Theorem 1 as printed: η²κ‖∇̂T‖²/2",
    )
    ax.plot(grid, -thm1.fit.a * grid * steps, color=ETA_SWEEP, ls=":", label="fit, η → 0")
    ax.set_xlabel("η²")
    ax.set_ylabel(f"−ΔT over {steps} steps")
    ax.legend(fontsize=8)
    ax.ticklabel_format(style="sci", scilimits=(-2, 2))
    ratio = leading_ratios(list(runs), kappa, grad_sq, 0.0)
    exact = [r.predicted_mean / (rate_leading(r.eta, kappa, grad_sq) * steps) for r in runs]
    el = [r.eta_lam_max for r in runs]
    ax2.plot(el, exact, color=THEORY, label="exact finite-η prediction")
    ax2.scatter(el, ratio, color=SGD_NOISE, zorder=3, label="measured")
    ax2.axhspan(0.95, 1.05, color="#dddddd", label="leading order ± 5 %")
    if np.isfinite(thm1.breakdown_eta_lam):
        ax2.axvline(thm1.breakdown_eta_lam, color=THEORY, ls=":", lw=1)
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("η·λ_max")
    ax2.set_ylabel("ΔT / leading-order prediction")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    return fig


@styled
def momentum_figure(
    plain: Sequence[DriftRun], heavy: Sequence[DriftRun], kappa: float, grad_sq: float
) -> Figure:
    """|ΔT| against η without and with heavy-ball momentum, with exact and leading theory."""
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for runs, color in ((plain, SERIES[0]), (heavy, SERIES[1])):
        b = runs[0].beta
        eta = np.array([r.eta for r in runs])
        steps = runs[0].steps
        ax.scatter(
            eta, [-r.mean for r in runs], color=color, zorder=3, label=f"measured, β = {b:g}"
        )
        ax.plot(
            eta, [-r.predicted_mean for r in runs], color=color, label=f"exact theory, β = {b:g}"
        )
        ax.plot(
            eta,
            -rate_leading(eta, kappa, grad_sq, b) * steps,
            color=color,
            ls=":",
            label=f"η²κ‖∇̂T‖²/4(1−β)², β = {b:g}",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("learning rate η")
    ax.set_ylabel(f"−ΔT over {plain[0].steps} steps")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def drift_table(runs: Sequence[DriftRun], kappa: float, grad_sq: float) -> Any:
    """Measured ΔT per learning rate against the exact theory, the leading order and the
    printed Theorem 1."""
    rows = [
        [
            f"{r.eta:g}", f"{r.eta_lam_max:.3f}", f"{r.mean:.4e}", f"{r.se:.1e}",
            f"{r.predicted_mean:.4e}", f"{100 * r.exact_relerr:.2f} %",
            f"{rate_leading(r.eta, kappa, grad_sq) * r.steps:.4e}",
            f"{rate_paper(r.eta, kappa, grad_sq) * r.steps:.4e}",
        ]
        for r in runs
    ]  # fmt: skip
    headers = ["η", "ηλ_max", "ΔT measured", "s.e.", "exact theory", "gap", "leading order",
               "printed Thm 1"]  # fmt: skip
    return markdown_table(headers, rows)


def momentum_table(heavy: Sequence[DriftRun], kappa: float, grad_sq: float) -> Any:
    """Heavy-ball drift per learning rate against its exact theory and its leading order."""
    ratios = leading_ratios(list(heavy), kappa, grad_sq, heavy[0].beta)
    rows = [
        [f"{r.eta:g}", f"{r.mean:.4e}", f"{r.predicted_mean:.4e}",
         f"{100 * r.exact_relerr:.2f} %", f"{q:.3f}"]
        for r, q in zip(heavy, ratios, strict=True)
    ]  # fmt: skip
    return markdown_table(["η", "ΔT measured", "exact theory", "gap", "over leading order"], rows)


def label_noise_table(label: Sequence[DriftRun], gauss: Sequence[DriftRun], zs: Sequence[float]):
    """Label noise against Gaussian κH noise at the same η: means, their distance in s.e.,
    label noise against its exact theory, and the ratio of their spreads over replicas."""
    by_eta = {g.eta: g for g in gauss}
    rows = [
        [f"{r.eta:g}", f"{by_eta[r.eta].mean:.5e}", f"{r.mean:.5e}", f"{z:.2f}",
         f"{100 * r.exact_relerr:.2f} %", f"{r.delta.std() / by_eta[r.eta].delta.std():.2f}"]
        for r, z in zip(label, zs, strict=True)
    ]  # fmt: skip
    headers = ["η", "ΔT, κH noise", "ΔT, label noise", "difference in s.e.",
               "label vs exact theory", "spread ratio"]  # fmt: skip
    return markdown_table(headers, rows)
