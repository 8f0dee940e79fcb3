"""Figures and tables of the page "The curvature engine"."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from hessnoise.experiments.curvature_tour import EstimatorCheck
from hessnoise.figures.style import SERIES, THEORY, styled
from hessnoise.report import markdown_table

POSITIVE, NEGATIVE = SERIES[1], SERIES[2]


@styled
def spectrum_figure(eigenvalues: torch.Tensor, *, title: str = "") -> Figure:
    """Sorted eigenvalues on a symmetric-log axis, the negative ones marked."""
    lam = eigenvalues.cpu().numpy()
    fig, ax = plt.subplots(figsize=(8, 3.4))
    idx = np.arange(lam.size)
    neg = lam < 0
    ax.scatter(idx[~neg], lam[~neg], s=4, color=POSITIVE, label="λ ≥ 0")
    ax.scatter(idx[neg], lam[neg], s=6, color=NEGATIVE, label=f"λ < 0 ({neg.sum()})")
    ax.set_yscale("symlog", linthresh=max(1e-6, np.abs(lam).max() * 1e-5))
    ax.set_xlabel("index i (ascending)")
    ax.set_ylabel("Hessian eigenvalue λᵢ")
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    return fig


@styled
def trace_estimates_figure(study: dict, exact: float, budget: int) -> Figure:
    """Histograms of trace estimates over seeds, one per estimator, against the exact trace."""
    fig, ax = plt.subplots(figsize=(7, 3.4))
    allv = torch.cat([s["values"] for s in study.values()]).numpy()
    bins = np.linspace(allv.min(), allv.max(), 40)
    for (name, s), colour in zip(study.items(), SERIES, strict=False):
        ax.hist(s["values"].numpy(), bins=bins, alpha=0.55, color=colour,
                label=f"{name}: std {s['std_empirical']:.3g}")  # fmt: skip
    ax.axvline(exact, color=THEORY, ls="--", label="exact trace")
    ax.set_xlabel(f"trace estimate from {budget} Hessian-vector products")
    ax.set_ylabel("seeds")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


@styled
def density_figure(
    grid: torch.Tensor, density: torch.Tensor, eigenvalues: torch.Tensor, sigma: float
) -> Figure:
    """An SLQ density against the exact eigenvalues smoothed with the same Gaussian."""
    lam = eigenvalues.to(torch.float64)
    kern = torch.exp(-0.5 * ((grid[:, None] - lam[None, :]) / sigma) ** 2) / (
        sigma * (2 * np.pi) ** 0.5
    )
    exact = kern.mean(1)
    fig, ax = plt.subplots(figsize=(7, 3.4))
    ax.plot(grid.numpy(), exact.numpy(), color=THEORY, lw=2, label="exact eigenvalues, smoothed")
    ax.plot(grid.numpy(), density.numpy(), color=SERIES[0], ls="--",
            label="stochastic Lanczos quadrature")  # fmt: skip
    ax.set_yscale("log")
    ax.set_ylim(max(exact.max().item() * 1e-6, 1e-8), exact.max().item() * 3)
    ax.set_xlabel("eigenvalue λ")
    ax.set_ylabel(f"spectral density (Gaussian σ = {sigma:.2g})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def estimator_table(checks: Sequence[EstimatorCheck]) -> Any:
    """Each trace estimator over seeds: mean, bias in standard errors, reported against
    measured spread."""
    rows = [
        [c.name, f"{c.mean:.4f}", f"{c.se_of_mean:.4f}", f"{c.bias_z:.2f}",
         f"{c.se_reported:.4f}", f"{c.std_empirical:.4f}"]
        for c in checks
    ]  # fmt: skip
    headers = ["estimator", "mean over seeds", "s.e. of mean", "bias in s.e.",
               "reported s.e. (rms)", "std over seeds"]  # fmt: skip
    return markdown_table(headers, rows)


def lanczos_table(ext: Any, exact: torch.Tensor, k: int) -> Any:
    """Lanczos' k largest and k smallest Ritz values with their bounds, against the exact ones."""
    ritz = torch.cat([ext.largest, ext.smallest])
    bounds = torch.cat([ext.largest_residual, ext.smallest_residual])
    truth = torch.cat([exact.flip(0)[:k], exact[:k]])
    names = [f"largest {i + 1}" for i in range(k)] + [f"smallest {i + 1}" for i in range(k)]
    rows = [
        [n, f"{r:.6f}", f"{b:.1e}", f"{t:.6f}"]
        for n, r, b, t in zip(names, ritz, bounds, truth, strict=True)
    ]
    return markdown_table(["", "Lanczos", "residual bound", "exact"], rows)


def bench_table(bench: dict[str, Any], gpu: dict[str, Any] | None = None) -> Any:
    """The benchmark's ratios against their targets; with ``gpu``, the GPU run's beside the
    CPU run's (rows that only one of them has are left blank in the other)."""
    verdict = {True: "met", False: "**missed**", None: "n/a"}

    def cells(run: dict[str, Any], key: str) -> list[str]:
        row = {r["key"]: r for r in run["targets"]}.get(key)
        if row is None:
            return ["", "", ""]
        value = "n/a" if row["value"] is None else f"{row['value']:.2f}"
        return [value, row["target"], verdict[row["passed"]]]

    keys = [r["key"] for r in bench["targets"]]
    if gpu is None:
        return markdown_table(["ratio", "measured", "target", ""],
                              [[k, *cells(bench, k)] for k in keys])  # fmt: skip
    keys += [r["key"] for r in gpu["targets"] if r["key"] not in keys]
    return markdown_table(
        ["ratio", "CPU", "target", "", "GPU", "target", ""],
        [[k, *cells(bench, k), *cells(gpu, k)] for k in keys],
    )
