"""Figures and tables of the chapter "The curved floor" (this book's follow-up to Fig. 2(a))."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from hessnoise.experiments.curved_floor import CurvatureProbe
from hessnoise.experiments.negative_eigenvalues import Sweep
from hessnoise.figures.negative_eigenvalues import sweep_points
from hessnoise.figures.style import REFERENCE, SGD_NOISE, THEORY, log_axes, styled
from hessnoise.report import markdown_table


@styled
def probe_figure(probe: CurvatureProbe, sw: Sweep | None = None) -> Figure:
    """Left: |Σλ₋| at frozen displacements √𝒞·u from the floor against 𝒞: exact spectra, the
    first-order (√𝒞) expansion, its floor-curvature part, and a ∝ 𝒞 line (A.3 on a flat
    floor), with the SGD runs at their 𝒞.  Right: the floor-curvature share of the exact sum."""
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10.5, 4.0))
    cs = probe.cs
    ax.plot(cs, np.abs(probe.exact), "o", color=THEORY, ms=6, zorder=3,
            label=r"exact spectrum at θ* + √$\mathcal{C}$·u")  # fmt: skip
    ax.plot(cs, np.abs(probe.linear), color=THEORY, lw=1.2,
            label=r"first order: s₋(H* + √$\mathcal{C}$ ∂ᵤH)")  # fmt: skip
    ax.plot(cs, np.abs(probe.floor_term), color=SGD_NOISE, ls="--", lw=1.2,
            label=r"floor curvature alone: √$\mathcal{C}$ s₋(N⊤∂ᵤH N)")  # fmt: skip
    ax.plot(cs, np.abs(probe.exact[-1]) * cs / cs[-1], color=REFERENCE, ls=":", lw=1.2,
            label=r"∝ $\mathcal{C}$ (A.3 on a flat floor)")  # fmt: skip
    if sw is not None:
        for label, colour, marker, runs in sweep_points(sw):
            ax.scatter([r.C for r in runs], [abs(r.sum_negative) for r in runs], marker=marker,
                       facecolors="none", edgecolors=colour, s=50, zorder=2,
                       label=f"SGD, sampled labels, {label}")  # fmt: skip
    log_axes(ax)
    ax.set_xlabel(r"noise scale $\mathcal{C}$ (displacement ⟨θᵢ²⟩ = 2$\mathcal{C}$)")
    ax.set_ylabel("|sum of negative eigenvalues| |Σλ₋|")
    ax.legend(fontsize=7)
    ax2.plot(cs, 100 * probe.floor_share, "o-", color=SGD_NOISE, label="floor curvature")
    ax2.plot(cs, 100 * probe.linear_share, "s:", color=THEORY, label="whole first order")
    if sw is not None:
        c = [r.C for r in sw.runs]
        ax2.axvspan(min(c), max(c), color="#eeeeee", label=r"$\mathcal{C}$ of the SGD runs")
    ax2.set_xscale("log")
    top = 100 * max(1.0, float(np.max(probe.linear_share)), float(np.max(probe.floor_share)))
    ax2.set_ylim(min(0.0, 100 * float(np.min(probe.floor_share))), top * 1.1)
    ax2.set_xlabel(r"noise scale $\mathcal{C}$")
    ax2.set_ylabel("share of the exact Σλ₋ (%)")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    return fig


def probe_table(probe: CurvatureProbe) -> Any:
    """The probe per 𝒞: excess loss, exact Σλ₋, the first-order terms and the floor's share."""
    rows = [
        [f"{c:.0e}", f"{x:.2e}", f"{e:.3e}", f"{lin:.3e}", f"{f:.3e}", f"{100 * f / e:.0f} %"]
        for c, x, e, lin, f in zip(
            probe.cs, probe.excess, probe.exact, probe.linear, probe.floor_term, strict=True
        )
    ]
    headers = ["𝒞", "⟨L⟩ − L*", "exact Σλ₋", "first order", "floor term", "floor share"]
    return markdown_table(headers, rows)


def runs_vs_probe_table(probe: CurvatureProbe, sweeps: Sequence[tuple[int, Sweep]]) -> Any:
    """Each SGD run against the probe at its 𝒞 (interpolated in log–log)."""
    lc, ly = np.log(probe.cs), np.log(np.abs(probe.exact))
    share = np.interp
    rows = []
    for seed, sw in sweeps:
        for r in sw.runs:
            at = -np.exp(np.interp(np.log(r.C), lc, ly))
            fs = share(np.log(r.C), lc, probe.floor_share)
            rows.append([seed, f"{r.eta:g}", r.batch_size, f"{r.C:.2e}", f"{r.sum_negative:.3f}",
                         f"{at:.3f}", f"{100 * fs:.0f} %"])  # fmt: skip
    headers = ["seed", "η", "S", "𝒞", "SGD ⟨Σλ₋⟩", "probe Σλ₋ at 𝒞", "floor share at 𝒞"]
    return markdown_table(headers, rows)
