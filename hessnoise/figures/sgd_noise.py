"""Figures and tables of the chapter "What SGD noise is on a real network" (Sec. 2.1.2–2.1.3,
eq. 4, 5).  The paper's mini-batch noise is red (SGD noise), the noise of sampled labels green
(label noise), theory black; descent states are circles joined by a line, SGD states at the
floor squares."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from hessnoise.experiments.noise_covariance import MinibatchCheck, StateAnalysis
from hessnoise.experiments.timescales import Drift, Timescales
from hessnoise.figures.style import (
    LABEL_NOISE,
    REFERENCE,
    SERIES,
    SGD_NOISE,
    THEORY,
    log_axes,
    styled,
)
from hessnoise.report import markdown_table

NOISE_STYLE = (
    ("paper", "paper's mini-batches", SGD_NOISE),
    ("sampled", "sampled labels", LABEL_NOISE),
)


def _kinds(states: Sequence[StateAnalysis]) -> tuple[list[StateAnalysis], list[StateAnalysis]]:
    return [s for s in states if s.kind == "descent"], [s for s in states if s.kind == "sgd"]


def _series(ax: Any, states: Sequence[StateAnalysis], value: Any, colour: str, label: str,
            *, err: Any = None) -> None:  # fmt: skip
    """Descent states as circles joined by a line, SGD states as squares; the floor (excess
    loss zero) is left out of the log axis."""
    descent, sgd = _kinds(states)
    for group, marker, line in ((descent, "o", "-"), (sgd, "s", "none")):
        if not group:
            continue
        x = np.array([s.excess for s in group])
        y = np.array([value(s) for s in group])
        kw = {"color": colour, "marker": marker, "ls": line, "lw": 1, "ms": 5}
        if err is not None:
            lo, hi = np.array([err(s) for s in group]).T
            ax.errorbar(x, y, yerr=[y - lo, hi - y], capsize=2, **kw)
        else:
            ax.plot(x, y, **kw)
    ax.plot([], [], color=colour, marker="o", ls="-", lw=1, label=label)


@styled
def eq5_figure(states: Sequence[StateAnalysis]) -> Figure:
    """Eq. 5 along the path against the excess loss: the alignment of each noise with H (with
    the rank ceiling of the paper's noise), tr Ĉ/tr H against eq. 5 (1) and against
    C ≈ (2L/S)H (2·excess), and the exponent γ of vᵀĈv ∝ λ^γ with its 95 % interval."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    for noise, label, colour in NOISE_STYLE:
        _series(axes[0], states, lambda s, n=noise: getattr(s, n).alignment, colour, label)
        _series(axes[1], states, lambda s, n=noise: getattr(s, n).kappa_ratio, colour, label)
        _series(
            axes[2],
            states,
            lambda s, n=noise: getattr(s, n).gamma.value,
            colour,
            label,
            err=lambda s, n=noise: (getattr(s, n).gamma.lo, getattr(s, n).gamma.hi),
        )
    descent, sgd = _kinds(states)
    x = np.array(sorted(s.excess for s in descent + sgd))
    axes[0].plot([s.excess for s in descent], [s.paper.ceiling for s in descent], color=SGD_NOISE,
                 ls=":", lw=1, label="rank ceiling, paper's noise")  # fmt: skip
    axes[1].axhline(1, color=THEORY, lw=1.2, label="eq. 5: Ĉ = H")
    axes[1].plot(x, 2 * x, color=REFERENCE, ls="--", lw=1.2, label="alternative: 2(L − H(q))")
    axes[2].axhline(1, color=THEORY, lw=1.2, label="eq. 5: γ = 1")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("excess loss L − H(q) (nats)")
    axes[1].set_yscale("log")
    axes[0].set_ylabel("alignment tr(ĈH)/(‖Ĉ‖_F‖H‖_F)")
    axes[1].set_ylabel("tr Ĉ / tr H")
    axes[2].set_ylabel("γ in vₖᵀĈvₖ ∝ λₖ^γ")
    axes[0].set_ylim(0, 1.05)
    axes[0].legend(fontsize=7, loc="lower left")
    axes[1].legend(fontsize=7, loc="lower right")
    axes[2].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


@styled
def directions_figure(states: Sequence[StateAnalysis]) -> Figure:
    """Per eigendirection of H, vₖᵀĈvₖ against λₖ for each noise at the given states (one
    panel each), with eq. 5's line vᵀĈv = λ and the rounding cut."""
    fig, axes = plt.subplots(1, len(states), figsize=(4 * len(states), 3.8), squeeze=False)
    for ax, s in zip(axes[0], states, strict=True):
        keep = s.lam > s.cut
        lam = s.lam[keep]
        for noise, label, colour in NOISE_STYLE:
            power = getattr(s, f"power_{noise}")[keep]
            shown = power > 0
            fit = getattr(s, noise)
            ax.scatter(lam[shown], power[shown], s=4, color=colour, alpha=0.5,
                       label=f"{label}: γ = {fit.gamma.value:.2f}")  # fmt: skip
        ends = np.array([lam.min(), lam.max()])
        ax.plot(ends, ends, color=THEORY, lw=1.2, label="eq. 5: vᵀĈv = λ")
        ax.axhline(s.cut, color=REFERENCE, ls=":", lw=1, label="rounding cut")
        log_axes(ax)
        ax.set_xlabel("Hessian eigenvalue λₖ")
        ax.set_title(f"{s.label}: L − H(q) = {s.excess:.2g}", fontsize=9)
        ax.legend(fontsize=7, loc="upper left", markerscale=3)
    axes[0][0].set_ylabel("noise power vₖᵀĈvₖ")
    fig.tight_layout()
    return fig


@styled
def eq4_figure(states: Sequence[StateAnalysis]) -> Figure:
    """Eq. 4 along the path: the size of each decomposition's second term relative to its
    first, and the negative eigenvalues of H and of eq. 4's second term R₄."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    rows = (
        ("second_term_ratio", "‖H − E‖/‖E‖: eq. 4 as printed", SGD_NOISE),
        ("soft_second_term_ratio", "‖R₄‖/‖A‖: eq. 4, smoothed targets", LABEL_NOISE),
        ("ggn_residual_ratio", "‖H − G‖/‖G‖: Gauss–Newton residual", SERIES[1]),
    )
    for name, label, colour in rows:
        _series(axes[0], states, lambda s, n=name: getattr(s, n), colour, label)
    axes[0].axhline(1, color=THEORY, lw=1, ls="--", label="second term = first term")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("‖second term‖_F / ‖first term‖_F")
    _series(axes[1], states, lambda s: -s.sum_negative, THEORY, "−Σλ₋(H)")
    _series(axes[1], states, lambda s: -s.soft_sum_negative, LABEL_NOISE, "−Σλ₋(R₄)")
    axes[1].set_yscale("log")
    axes[1].set_ylabel("minus the sum of negative eigenvalues")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("excess loss L − H(q) (nats)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


@styled
def timescale_figure(relax: np.ndarray, ts: Timescales) -> Figure:
    """The relaxation times 1/λ_i of the floor's non-degenerate directions (SGD time),
    slowest last, against the runs' windows and the drift time of the trace."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.plot(np.arange(1, relax.size + 1), relax, color=THEORY, lw=1.5,
            label="relaxation time 1/λᵢ at the floor")  # fmt: skip
    guides = (
        (ts.tau_equil, "equilibration window τ_equil", SERIES[0], "--"),
        (ts.tau_equil + ts.tau_measure, "whole run", SERIES[1], "--"),
        (ts.tau_drift, "trace drift time T/|dT/dτ| (centre run)", SGD_NOISE, "-"),
        (ts.tau_drift / ts.separation, f"drift time / {ts.separation:g}", SGD_NOISE, ":"),
    )
    for value, label, colour, ls in guides:
        if math.isfinite(value):
            ax.axhline(value, color=colour, ls=ls, lw=1.2, label=f"{label}: {value:.3g}")
    ax.axhspan(ts.tau_drift_min, ts.tau_drift_max, color=SGD_NOISE, alpha=0.1,
               label="drift times over all runs")  # fmt: skip
    ax.set_yscale("log")
    ax.set_xlabel("non-degenerate direction i, fastest first")
    ax.set_ylabel("SGD time τ = ηt")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def _gamma(fit: Any) -> str:
    return "—" if math.isnan(fit.gamma.value) else f"{fit.gamma:.2f}"


def _num(v: float, fmt: str = ".3g") -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def eq5_table(states: Sequence[StateAnalysis]) -> Any:
    """Per state: the excess loss, and for each noise the alignment, tr Ĉ/tr H and γ with its
    interval; the paper's noise against C ≈ (2L/S)H."""
    rows = [
        [s.label, f"{s.excess:.2e}", f"{s.trace:.3g}",
         _num(s.paper.alignment, ".3f"), f"{s.paper.kappa_ratio:.2e}", _gamma(s.paper),
         _num(s.alt_ratio, ".2f"),
         _num(s.sampled.alignment, ".3f"), f"{s.sampled.kappa_ratio:.2f}", _gamma(s.sampled)]
        for s in states
    ]  # fmt: skip
    headers = ["state", "L − H(q)", "tr H", "paper: alignment", "paper: tr Ĉ/tr H",
               "paper: γ [95 %]", "paper: tr Ĉ/(2(L − H(q)) tr H)", "sampled: alignment",
               "sampled: tr Ĉ/tr H", "sampled: γ [95 %]"]  # fmt: skip
    return markdown_table(headers, rows)


def eq4_table(states: Sequence[StateAnalysis]) -> Any:
    """Per state: eq. 4's second term against its first (as printed, for smoothed targets,
    Gauss–Newton), and the negative eigenvalues of H and of R₄."""
    rows = [
        [s.label, f"{s.excess:.2e}", f"{s.second_term_ratio:.3g}",
         f"{s.soft_second_term_ratio:.3g}", f"{s.ggn_residual_ratio:.3g}",
         _num(s.n_negative, ".0f"), _num(s.sum_negative), _num(s.soft_n_negative, ".0f"),
         _num(s.soft_sum_negative)]
        for s in states
    ]  # fmt: skip
    headers = ["state", "L − H(q)", "‖H − E‖/‖E‖", "‖R₄‖/‖A‖", "‖H − G‖/‖G‖", "n₋(H)",
               "Σλ₋(H)", "n₋(R₄)", "Σλ₋(R₄)"]  # fmt: skip
    return markdown_table(headers, rows)


def minibatch_table(checks: Sequence[MinibatchCheck]) -> Any:
    """The exact formulas against actual mini-batch gradients."""
    rows = [
        [c.label, c.protocol, c.batch_size, c.draws, f"{c.trace_exact:.4g}", f"{c.trace:.4g}",
         f"{c.z_trace:+.2f}", f"{c.z_trace_ch:+.2f}", f"{c.z_top_max:.2f}",
         _num(c.gamma_exact.value, ".3f"), _num(c.gamma_mc.value, ".3f"),
         _num(c.alignment_exact, ".3f"), _num(c.alignment_mc, ".3f")]
        for c in checks
    ]  # fmt: skip
    headers = ["state", "noise", "S", "draws", "tr Ĉ exact", "tr Ĉ Monte Carlo", "z(tr Ĉ)",
               "z(tr ĈH)", "max ∣z∣, top 10", "γ exact", "γ Monte Carlo", "alignment exact",
               "alignment Monte Carlo"]  # fmt: skip
    return markdown_table(headers, rows)


def drift_table(drifts: Sequence[Drift]) -> Any:
    """The trace drift of each sampled-label run of the negative-eigenvalue chapter."""
    rows = [
        [f"{d.eta:g}", d.batch_size, f"{d.C:.2e}", f"{d.rate:.2e}", f"{d.rate / d.C:.3f}",
         _num(d.tau_drift, ".3g"), f"{d.snapshot_rate:.1e}"]
        for d in drifts
    ]  # fmt: skip
    headers = ["η", "S", "𝒞", "(1/T*) dT/dτ along the floor", "rate / 𝒞",
               "drift time T*/∣dT/dτ∣", "from the snapshots [95 %]"]  # fmt: skip
    return markdown_table(headers, rows)
