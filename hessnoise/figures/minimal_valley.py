"""Figures and tables of the chapter "The minimal valley" (Lemma 1, eq. 3)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from hessnoise import valley as V
from hessnoise.figures.style import ISO_NOISE, LABEL_NOISE, SGD_NOISE, THEORY, styled
from hessnoise.report import markdown_table

NOISE_COLOURS = (SGD_NOISE, ISO_NOISE, LABEL_NOISE)


@styled
def valley_slice(valley: V.Valley, theta_hat0: Sequence[float], *, span: float = 1.5) -> Figure:
    """Loss contours on the plane (θ₁, s) with θ̂ = θ̂₀ + s·(1, 1)/√2 and θ₂ = 0.

    The floor θ₁ = 0 is a line of minima; the width of the valley ∝ λ₁(θ̂)^{-1/2} changes
    along it, which is what SGD noise feels.
    """
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
    ax.axhline(0, color=SGD_NOISE, lw=1.5, label="valley floor θ₁ = 0 (minima)")
    ax.set_xlabel("position along the floor s (θ̂ = θ̂₀ + s(1,1)/√2)")
    ax.set_ylabel("non-degenerate coordinate θ₁")
    ax.legend(loc="upper left")
    ax.grid(False)
    ax2.plot(s.numpy(), lam1.numpy(), color=THEORY)
    ax2.set_xlabel("position along the floor s")
    ax2.set_ylabel("curvature λ₁(θ̂)")
    ax2.set_title("the floor is flat, its curvature is not", fontsize=9)
    fig.tight_layout()
    return fig


@styled
def fdr_figure(results: Sequence) -> Figure:
    """Both sides of the master equation for every noise, η and coordinate, on log axes."""
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
    labels = list(dict.fromkeys(r.noise for r in results))
    markers = ["o", "s", "^", "D"]
    lo, hi = np.inf, 0.0
    for k, label in enumerate(labels):
        rs = [r for r in results if r.noise == label]
        x = torch.cat([r.rhs for r in rs]).numpy()
        y = torch.cat([r.lhs for r in rs]).numpy()
        lo, hi = min(lo, x.min(), y.min()), max(hi, x.max(), y.max())
        colour = NOISE_COLOURS[k % len(NOISE_COLOURS)]
        ax.scatter(x, y, marker=markers[k % 4], color=colour, label=label, zorder=3)
        etas = [r.eta for r in rs]
        err = [100 * r.rel_err.max().item() for r in rs]
        ax2.plot(etas, err, marker=markers[k % 4], color=colour, label=label)
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


def fdr_table(results: Sequence) -> Any:
    """Both sides of the master equation per noise, η and coordinate."""
    rows = [
        [
            r.noise, f"{r.eta:g}", i + 1, f"{r.eta * r.lam[i].item():.2f}",
            f"{r.lhs[i].item():.4e}", f"{r.rhs[i].item():.4e}",
            f"{r.rhs_conditional[i].item():.4e}", f"{100 * r.rel_err[i].item():.3f} %",
        ]
        for r in results
        for i in range(r.lhs.numel())
    ]  # fmt: skip
    headers = ["noise", "η", "i", "ηλᵢ", "⟨θᵢ∂ᵢL⟩", "(η/2)⟨(∂ᵢL^B)²⟩", "(η/2)⟨C̃ᵢᵢ⟩", "gap"]
    return markdown_table(headers, rows)
