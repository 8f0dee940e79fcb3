"""Figures for the book: one function per figure, each returning a matplotlib ``Figure``.

Every figure has labelled axes with units, a legend, and the theory beside the measurement.
Chapters glue the returned figure (``Chapter.figure``) and write the caption, with the
paper's figure number, in the prose.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from hessnoise import valley as V

# Colours: the paper draws SGD noise in red and isotropic noise in blue (Fig. 2c–d).
SGD_RED = "#c0392b"
ISO_BLUE = "#2c6fbb"
THEORY = "#222222"
PALETTE = ["#c0392b", "#2c6fbb", "#27ae60", "#8e44ad", "#d35400", "#16a085"]


def style() -> None:
    """A quiet house style, applied by every figure function."""
    plt.rcParams.update(
        {
            "figure.dpi": 110,
            "savefig.dpi": 110,
            "font.size": 10,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.25,
            "legend.frameon": False,
        }
    )


def valley_slice(valley: V.Valley, theta_hat0: Sequence[float], *, span: float = 1.5) -> Figure:
    """Loss contours on the plane (θ₁, s) with θ̂ = θ̂₀ + s·(1, 1)/√2 and θ₂ = 0.

    The floor θ₁ = 0 is a line of minima; the width of the valley ∝ λ₁(θ̂)^{-1/2} changes
    along it, which is what SGD noise feels.
    """
    style()
    s = torch.linspace(-span, span, 241, dtype=V.DTYPE)
    th1 = torch.linspace(-0.6, 0.6, 241, dtype=V.DTYPE)
    ss, tt = torch.meshgrid(s, th1, indexing="xy")
    direction = torch.tensor([1.0, 1.0], dtype=V.DTYPE) / 2**0.5
    theta_hat = torch.as_tensor(theta_hat0, dtype=V.DTYPE) + ss.reshape(-1, 1) * direction
    theta = torch.stack([tt.reshape(-1), torch.zeros_like(tt.reshape(-1))], -1)
    loss = valley.loss(theta, theta_hat).reshape(ss.shape)
    lam1 = valley.eigenvalues(theta_hat)[:, 0].reshape(ss.shape)[0]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(9, 3.4), gridspec_kw={"width_ratios": [1.6, 1]})
    cs = ax.contourf(ss.numpy(), tt.numpy(), loss.numpy(), levels=20, cmap="Greys_r")
    fig.colorbar(cs, ax=ax, label="loss L")
    ax.axhline(0, color=SGD_RED, lw=1.5, label="valley floor θ₁ = 0 (minima)")
    ax.set_xlabel("position along the floor s (θ̂ = θ̂₀ + s(1,1)/√2)")
    ax.set_ylabel("non-degenerate coordinate θ₁")
    ax.legend(loc="upper left")
    ax.grid(False)
    ax2.plot(s.numpy(), lam1.numpy(), color=SGD_RED)
    ax2.set_xlabel("position along the floor s")
    ax2.set_ylabel("curvature λ₁(θ̂)")
    ax2.set_title("the floor is flat, its curvature is not", fontsize=9)
    fig.tight_layout()
    return fig


def fdr_figure(results: Sequence) -> Figure:
    """Both sides of the master equation for every noise, η and coordinate, on log axes."""
    style()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
    labels = list(dict.fromkeys(r.noise for r in results))
    markers = ["o", "s", "^", "D"]
    lo, hi = np.inf, 0.0
    for k, label in enumerate(labels):
        rs = [r for r in results if r.noise == label]
        x = torch.cat([r.rhs for r in rs]).numpy()
        y = torch.cat([r.lhs for r in rs]).numpy()
        lo, hi = min(lo, x.min(), y.min()), max(hi, x.max(), y.max())
        ax.scatter(x, y, marker=markers[k % 4], color=PALETTE[k], label=label, zorder=3)
        etas = [r.eta for r in rs]
        err = [100 * r.rel_err.max().item() for r in rs]
        ax2.plot(etas, err, marker=markers[k % 4], color=PALETTE[k], label=label)
    grid = np.array([lo / 1.5, hi * 1.5])
    ax.plot(grid, grid, color=THEORY, lw=1, ls="--", label="eq. 3: equality")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("(η/2)⟨(∂ᵢL^B)²⟩")
    ax.set_ylabel("⟨θᵢ ∂ᵢL⟩")
    ax.legend(fontsize=8)
    ax2.axhline(1.0, color=THEORY, ls="--", lw=1, label="tolerance, 1 %")
    ax2.set_xscale("log")
    ax2.set_xlabel("learning rate η")
    ax2.set_ylabel("largest |lhs/rhs − 1| over i (%)")
    ax2.set_ylim(0, 1.2)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    return fig


def spectrum_figure(eigenvalues: torch.Tensor, *, title: str = "") -> Figure:
    """Sorted eigenvalues on a symmetric-log axis, the negative ones marked."""
    style()
    lam = eigenvalues.cpu().numpy()
    fig, ax = plt.subplots(figsize=(8, 3.4))
    idx = np.arange(lam.size)
    neg = lam < 0
    ax.scatter(idx[~neg], lam[~neg], s=4, color=ISO_BLUE, label="λ ≥ 0")
    ax.scatter(idx[neg], lam[neg], s=6, color=SGD_RED, label=f"λ < 0 ({neg.sum()})")
    ax.set_yscale("symlog", linthresh=max(1e-6, np.abs(lam).max() * 1e-5))
    ax.set_xlabel("index i (ascending)")
    ax.set_ylabel("Hessian eigenvalue λᵢ")
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    return fig


def trace_estimates_figure(study: dict, exact: float, budget: int) -> Figure:
    """Histograms of trace estimates over seeds, one per estimator, against the exact trace."""
    style()
    fig, ax = plt.subplots(figsize=(7, 3.4))
    colors = {"Hutchinson": SGD_RED, "Hutch++": ISO_BLUE}
    allv = torch.cat([s["values"] for s in study.values()]).numpy()
    bins = np.linspace(allv.min(), allv.max(), 40)
    for name, s in study.items():
        ax.hist(
            s["values"].numpy(),
            bins=bins,
            alpha=0.55,
            color=colors.get(name),
            label=f"{name}: std {s['std_empirical']:.3g}",
        )
    ax.axvline(exact, color=THEORY, ls="--", label="exact trace")
    ax.set_xlabel(f"trace estimate from {budget} Hessian-vector products")
    ax.set_ylabel("seeds")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def density_figure(
    grid: torch.Tensor, density: torch.Tensor, eigenvalues: torch.Tensor, sigma: float
) -> Figure:
    """An SLQ density against the exact eigenvalues smoothed with the same Gaussian."""
    style()
    lam = eigenvalues.to(torch.float64)
    kern = torch.exp(-0.5 * ((grid[:, None] - lam[None, :]) / sigma) ** 2) / (
        sigma * (2 * np.pi) ** 0.5
    )
    exact = kern.mean(1)
    fig, ax = plt.subplots(figsize=(7, 3.4))
    ax.plot(grid.numpy(), exact.numpy(), color=THEORY, lw=2, label="exact eigenvalues, smoothed")
    ax.plot(
        grid.numpy(), density.numpy(), color=SGD_RED, ls="--", label="stochastic Lanczos quadrature"
    )
    ax.set_yscale("log")
    ax.set_ylim(max(exact.max().item() * 1e-6, 1e-8), exact.max().item() * 3)
    ax.set_xlabel("eigenvalue λ")
    ax.set_ylabel(f"spectral density (Gaussian σ = {sigma:.2g})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def eq11_figure(runs: Sequence, kappa: float) -> Figure:
    """Measured ⟨θᵢ²⟩ over its leading order ηκ/2 against ηλᵢ, with eq. 11's 2/(2 − ηλ)."""
    style()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    x = np.linspace(1e-3, 1.95, 400)
    ax.plot(x, 2 / (2 - x), color=THEORY, label="eq. 11: 2/(2 − ηλ)")
    ax.axhline(1.0, color=THEORY, ls=":", label="leading order: 1")
    for i, marker in enumerate(["o", "s"]):
        xs = [r.eta * r.lam[i].item() for r in runs]
        ys = [r.theta_sq[i].item() / (r.eta * kappa / 2) for r in runs]
        ax.scatter(
            xs, ys, marker=marker, color=PALETTE[i], zorder=3, label=f"measured, i = {i + 1}"
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("ηλᵢ")
    ax.set_ylabel("⟨θᵢ²⟩ / (ηκ/2)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def fig2b(runs: Sequence, fit, rate_correct, rate_paper, breakdown: float) -> Figure:
    """Fig. 2(b): the change of trace against η², with the corrected and the printed Theorem 1,
    and (right) where the leading order stops holding."""
    style()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    steps = runs[0].steps
    lead = [r for r in runs if r.eta_lam_max <= breakdown] or runs[:3]
    x = np.array([r.eta**2 for r in lead])
    y = np.array([-r.mean for r in lead])
    ax.errorbar(
        x,
        y,
        yerr=[2 * r.se for r in lead],
        fmt="o",
        color=SGD_RED,
        label="measured (±2 s.e.)",
        zorder=3,
    )
    grid = np.linspace(0, x.max() * 1.05, 50)
    ax.plot(
        grid,
        -rate_correct(np.sqrt(grid)) * steps,
        color=THEORY,
        label="Theorem 1, corrected: η²κ‖∇̂T‖²/4",
    )
    ax.plot(
        grid,
        -rate_paper(np.sqrt(grid)) * steps,
        color=THEORY,
        ls="--",
        label="Theorem 1 as printed: η²κ‖∇̂T‖²/2",
    )
    ax.plot(grid, -fit.a * grid * steps, color=ISO_BLUE, ls=":", label="fit, η → 0")
    ax.set_xlabel("η²")
    ax.set_ylabel(f"−ΔT over {steps} steps")
    ax.legend(fontsize=8)
    ax.ticklabel_format(style="sci", scilimits=(-2, 2))
    ratio = [r.mean / (rate_correct(r.eta) * steps) for r in runs]
    exact = [r.predicted_mean / (rate_correct(r.eta) * steps) for r in runs]
    el = [r.eta_lam_max for r in runs]
    ax2.plot(el, exact, color=THEORY, label="exact finite-η prediction")
    ax2.scatter(el, ratio, color=SGD_RED, zorder=3, label="measured")
    ax2.axhspan(0.95, 1.05, color="#dddddd", label="leading order ± 5 %")
    if np.isfinite(breakdown):
        ax2.axvline(breakdown, color=THEORY, ls=":", lw=1)
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("η·λ_max")
    ax2.set_ylabel("ΔT / leading-order prediction")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    return fig


def momentum_figure(plain: Sequence, heavy: Sequence, rate_leading, beta: float) -> Figure:
    """|ΔT| against η without and with heavy-ball momentum, with exact and leading theory."""
    style()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for runs, b, color in ((plain, 0.0, SGD_RED), (heavy, beta, ISO_BLUE)):
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
            -rate_leading(eta, b) * steps,
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


def _band(ax, steps, values, color, label):
    mean = values.mean(1).numpy()
    lo = torch.quantile(values, 0.1, dim=1).numpy()
    hi = torch.quantile(values, 0.9, dim=1).numpy()
    ax.fill_between(steps, lo, hi, color=color, alpha=0.2, lw=0)
    ax.plot(steps, mean, color=color, label=label)


def fig2cd(race: dict) -> Figure:
    """Fig. 2(c)–(d): trace and log-determinant against steps for each noise, mean and the
    10–90 % band over replicas."""
    style()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    colors = [SGD_RED, ISO_BLUE]
    for (name, (_, m)), color in zip(race.items(), colors, strict=True):
        steps = m.record_steps.numpy()
        _band(axes[0], steps, m.trajectory["trace"], color, name)
        _band(axes[1], steps, m.trajectory["logdet"], color, name)
    axes[0].set_ylabel("trace T = λ₁ + λ₂")
    axes[1].set_ylabel("log Det = log λ₁λ₂")
    for ax in axes:
        ax.set_xlabel("SGD step")
        ax.legend(fontsize=8)
    axes[0].set_title("(c) trace", fontsize=9)
    axes[1].set_title("(d) determinant", fontsize=9)
    fig.tight_layout()
    return fig


def plane_figure(race: dict, n_paths: int = 25) -> Figure:
    """Trajectories in the (trace, log Det) plane: the mean path of each noise and a few
    individual replicas."""
    style()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colors = [SGD_RED, ISO_BLUE]
    for (name, (_, m)), color in zip(race.items(), colors, strict=True):
        t, d = m.trajectory["trace"], m.trajectory["logdet"]
        for j in range(min(n_paths, t.shape[1])):
            ax.plot(t[:, j].numpy(), d[:, j].numpy(), color=color, alpha=0.12, lw=0.7)
        ax.plot(t.mean(1).numpy(), d.mean(1).numpy(), color=color, lw=2.2, label=f"{name}, mean")
        ax.scatter(t.mean(1).numpy()[::10], d.mean(1).numpy()[::10], color=color, s=14, zorder=3)
    start = next(iter(race.values()))[1]
    ax.scatter(
        [start.trajectory["trace"][0, 0]],
        [start.trajectory["logdet"][0, 0]],
        color=THEORY,
        marker="*",
        s=120,
        zorder=4,
        label="start",
    )
    ax.set_xlabel("trace T")
    ax.set_ylabel("log Det")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
