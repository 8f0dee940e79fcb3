"""Figures and tables of the chapter "Designing the noise" (Theorem 2, Corollary 2.1,
Fig. 2(c)–(d), and the grid of starts)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from hessnoise import valley as V
from hessnoise.drift import DriftMeasurement
from hessnoise.experiments.designing_noise import (
    TRACKED,
    DesigningNoiseConfig,
    GridStart,
    efficiencies,
    predicted_winner,
)
from hessnoise.figures.style import ISO_NOISE, REFERENCE, SGD_NOISE, THEORY, styled
from hessnoise.report import markdown_table
from hessnoise.stats import mean_se

Race = dict[str, tuple[V.Noise, DriftMeasurement]]
COLOURS = (SGD_NOISE, ISO_NOISE)


def _band(ax: Any, steps: np.ndarray, values: torch.Tensor, color: str, label: str) -> None:
    mean = values.mean(1).numpy()
    lo = torch.quantile(values, 0.1, dim=1).numpy()
    hi = torch.quantile(values, 0.9, dim=1).numpy()
    ax.fill_between(steps, lo, hi, color=color, alpha=0.2, lw=0)
    ax.plot(steps, mean, color=color, label=label)


@styled
def fig2cd(race: Race) -> Figure:
    """Fig. 2(c)–(d): trace and log-determinant against steps for each noise, mean and the
    10–90 % band over replicas."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for (name, (_, m)), color in zip(race.items(), COLOURS, strict=True):
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


@styled
def plane_figure(race: Race, n_paths: int = 25) -> Figure:
    """Trajectories in the (trace, log Det) plane: the mean path of each noise and a few
    individual replicas."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for (name, (_, m)), color in zip(race.items(), COLOURS, strict=True):
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


@styled
def grid_figure(grid: Sequence[GridStart], selected: tuple[float, float]) -> Figure:
    """The grid of starts in the (θ̂₁, θ̂₂) plane: which noise lowered each quantity more
    after the whole run (left half of a marker: trace, right half: log Det), with the
    chapter's selected start marked."""
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    colour = {"SGD": SGD_NOISE, "isotropic": ISO_NOISE}
    for g in grid:
        x, y = g.theta_hat0
        for f, side in (("trace", "left"), ("logdet", "right")):
            ax.scatter(x, y, s=260, marker=_half(side), color=colour[g.late.winner(f)], zorder=3)
        if g.late.paper_outcome:
            ax.scatter(x, y, s=520, facecolors="none", edgecolors=THEORY, lw=1.2, zorder=2)
    ax.scatter(*selected, marker="*", s=200, color=REFERENCE, zorder=4, label="selected start")
    for name, c in colour.items():
        ax.scatter([], [], s=80, color=c, label=f"{name} noise lowers it more")
    ax.scatter([], [], s=160, facecolors="none", edgecolors=THEORY, label="paper's outcome holds")
    ax.set_xlabel("θ̂₁")
    ax.set_ylabel("θ̂₂")
    ax.set_title("left half: trace; right half: log Det", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_aspect("equal", adjustable="datalim")
    fig.tight_layout()
    return fig


def _half(side: str) -> Any:
    """A marker path: the left or right half of a disc."""
    from matplotlib.path import Path

    angles = np.linspace(np.pi / 2, 3 * np.pi / 2, 30) + (np.pi if side == "right" else 0)
    verts = np.column_stack([np.cos(angles), np.sin(angles)])
    verts = np.vstack([verts, [0, 0], verts[:1]])
    return Path(verts, closed=True)


def efficiency_table(cfg: DesigningNoiseConfig, points: Sequence[tuple[float, float]]) -> Any:
    """⟨Δf⟩ per step / η(⟨L⟩ − L*) to leading order per start and noise, and the faster one."""
    rows = []
    for p in points:
        e = efficiencies(cfg, p)
        win = predicted_winner(e)
        rows.append(
            [str(p), f"{e['trace', 'SGD']:.3f}", f"{e['trace', 'isotropic']:.3f}", win["trace"],
             f"{e['logdet', 'SGD']:.3f}", f"{e['logdet', 'isotropic']:.3f}", win["logdet"]]
        )  # fmt: skip
    headers = ["θ̂₀", "trace: SGD", "trace: isotropic", "faster", "log Det: SGD",
               "log Det: isotropic", "faster"]  # fmt: skip
    return markdown_table(headers, rows)


def race_table(race: Race) -> Any:
    """Measured change of each f under each noise against Theorem 2, exact and leading order."""
    rows = []
    for name, (_, m) in race.items():
        for f in TRACKED:
            est = mean_se(m.delta[f].numpy())
            exact = m.predicted[f].mean().item()
            rows.append(
                [name, f, f"{est.value:.4f}", f"{est.se:.4f}", f"{exact:.4f}",
                 f"{m.predicted_leading[f].mean().item():.4f}",
                 f"{100 * abs(est.value / exact - 1):.2f} %"]
            )  # fmt: skip
    headers = ["noise", "f", "Δf measured", "s.e.", "exact theory", "leading order", "gap"]
    return markdown_table(headers, rows)


def grid_table(grid: Sequence[GridStart]) -> Any:
    """Per start: the z of each comparison (early and late), the predicted and the measured
    winners, and whether the paper's outcome holds."""
    rows = []
    for g in grid:
        rows.append(
            [f"({g.theta_hat0[0]:.3g}, {g.theta_hat0[1]:.3g})",
             f"{g.early.z_trace:.1f} / {g.late.z_trace:.1f}",
             f"{g.early.z_logdet:.1f} / {g.late.z_logdet:.1f}",
             f"{g.predicted['trace']}, {g.predicted['logdet']}",
             f"{g.late.winner('trace')}, {g.late.winner('logdet')}",
             "yes" if g.late.paper_outcome else "no"]
        )  # fmt: skip
    headers = [
        "θ̂₀",
        "z, trace (early / late)",
        "z, log Det (early / late)",
        "predicted faster (trace, log Det)",
        "measured faster, late",
        "paper's outcome",
    ]
    return markdown_table(headers, rows)


def user_table(m: DriftMeasurement) -> Any:
    """Theorem 2 for the user's f: measured change against the exact and leading theory."""
    est = mean_se(m.delta["f"].numpy())
    rows = [
        ["measured", f"{est.value:.4f} ± {est.se:.4f}"],
        ["Theorem 2, exact in η", f"{m.predicted['f'].mean().item():.4f}"],
        ["Theorem 2, leading order", f"{m.predicted_leading['f'].mean().item():.4f}"],
    ]
    return markdown_table(["", "Δf over the run"], rows)
