"""Figures and tables of the chapter "The Hessian trace along the valley" (Section 4.3, Fig. 3,
App. A.2, Fig. 4).  The trace at projected points in the colour of SGD noise (the paper's
claim is about what the noise does), the SGD states themselves dashed, validation losses in
the second series colour, stability edges and the norm-growth prediction as reference and
theory lines."""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from hessnoise.experiments.path_problem import PathConfig
from hessnoise.experiments.trace_along_path import TraceConfig, TraceRun
from hessnoise.experiments.trace_analysis import LayerChange, TraceSummary, seed_curves
from hessnoise.figures.style import REFERENCE, SERIES, SGD_NOISE, THEORY, styled
from hessnoise.report import markdown_table

VAL = SERIES[1]


def _epochs(run: TraceRun) -> np.ndarray:
    return np.array(run.epochs, dtype=float)


def _trace_panel(ax, runs: Sequence[TraceRun], title: str) -> None:
    """Each seed's trace at the projected points with its standard error, the mean and
    standard deviation over seeds, and the mean at the SGD states."""
    for r in runs:
        ax.errorbar(
            _epochs(r),
            [p.trace for p in r.projected],
            yerr=[p.trace_se for p in r.projected],
            color=SGD_NOISE,
            alpha=0.3,
            lw=0.8,
            ms=2,
            fmt="-o",
            elinewidth=0.8,
        )
    c = seed_curves(runs)
    ax.plot(c.grid, c.mean, color=SGD_NOISE, lw=2.2, label="projected points: mean over seeds")
    ax.fill_between(
        c.grid,
        c.mean - c.sd,
        c.mean + c.sd,
        color=SGD_NOISE,
        alpha=0.15,
        label="± s.d. over seeds (the paper's bars)",
    )
    sgd = seed_curves(runs, kind="sgd")
    ax.plot(
        sgd.grid,
        sgd.mean,
        color=SGD_NOISE,
        ls="--",
        lw=1.4,
        label="SGD states themselves: mean over seeds",
    )
    ax.plot([], [], "-o", color=SGD_NOISE, alpha=0.3, ms=2, label="one seed, ± Hutch++ s.e.")
    ax.set_xlabel("epoch of the SGD state projected")
    ax.set_ylabel("Hessian trace tr H (nats per unit² of θ)")
    ax.set_title(f"{title} ({len(runs)} seeds)", fontsize=9)


@styled
def fig3_figure(groups: Sequence[Sequence[TraceRun]]) -> Figure:
    """Fig. 3: the trace along the valley of each network's projected paths."""
    fig, axes = plt.subplots(1, len(groups), figsize=(6.0 * len(groups), 4.2), squeeze=False)
    for ax, runs in zip(axes[0], groups, strict=True):
        _trace_panel(ax, runs, runs[0].cfg.name)
    axes[0, 0].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig


@styled
def confound_figure(
    main: Sequence[TraceRun], other: Sequence[TraceRun] | None, summary: TraceSummary
) -> Figure:
    """The confounds on the main network.  (a) The trace, the scale-invariant trace and the
    trace of the network without BatchNorm, each over its value at the first epoch of the
    common grid.  (b) The trace of the scale-invariant groups against what norm growth alone
    predicts.  (c) λ_max at the projected points against the stability edges 2/η and
    2(1 + μ)/η.  (d) The trace against the validation loss, per seed."""
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.6))
    (a, b), (c, d) = axes
    for what, label, style in (
        ("trace", "tr H", "-"),
        ("invariant", "scale-invariant tr(DH)", ":"),
    ):
        cur = seed_curves(main, what)
        rel = cur.values / cur.values[:, :1]
        a.plot(cur.grid, rel.mean(0), style, color=SGD_NOISE, lw=2, label=f"{label}, with BN")
    if other:
        cur = seed_curves(other)
        rel = cur.values / cur.values[:, :1]
        a.plot(cur.grid, rel.mean(0), "-", color=SERIES[0], lw=2, label="tr H, without BN")
    a.axhline(1.0, color=REFERENCE, lw=0.8)
    a.set_xlabel("epoch")
    a.set_ylabel("value / value at the first common epoch")
    a.set_title("(a) mean over seeds", fontsize=9)
    a.legend(fontsize=7)

    inv = main[0].partition.invariant.numpy()
    for k, r in enumerate(main):
        t = np.array([p.group_traces.numpy()[inv].sum() for p in r.projected])
        first = r.projected[0]
        scale = [
            (first.group_norms.numpy()[inv] / p.group_norms.numpy()[inv]) ** 2 for p in r.projected
        ]
        pred = [(first.group_traces.numpy()[inv] * s).sum() for s in scale]
        b.plot(
            _epochs(r),
            t,
            "o-",
            ms=2,
            lw=0.8,
            color=SGD_NOISE,
            alpha=0.5,
            label="measured Σ tr H_gg over invariant groups" if k == 0 else None,
        )
        b.plot(
            _epochs(r),
            pred,
            "-",
            lw=1.2,
            color=THEORY,
            label="norm growth alone: Σ tr H_gg(first)·‖θ_g(first)‖²/‖θ_g‖²" if k == 0 else None,
        )
    b.set_xlabel("epoch")
    b.set_ylabel("trace of the scale-invariant blocks")
    b.set_title("(b) BatchNorm-invariant groups, each seed", fontsize=9)
    b.legend(fontsize=7)

    for k, r in enumerate(main):
        lam = np.array([p.lam_max for p in r.projected])
        res = np.array([p.lam_max_residual for p in r.projected])
        c.errorbar(
            _epochs(r),
            lam,
            yerr=res,
            fmt="o-",
            ms=2,
            lw=0.8,
            color=SGD_NOISE,
            alpha=0.6,
            label="λ_max (Lanczos, ± residual bound)" if k == 0 else None,
        )
    c.axhline(
        summary.stability_edge,
        color=REFERENCE,
        ls="--",
        lw=1,
        label=f"2/η = {summary.stability_edge:g} (plain GD edge)",
    )
    c.axhline(
        summary.stability_edge_heavy_ball,
        color=THEORY,
        ls="--",
        lw=1,
        label=f"2(1 + μ)/η = {summary.stability_edge_heavy_ball:g} (with momentum)",
    )
    c.set_yscale("log")
    c.set_xlabel("epoch")
    c.set_ylabel("largest Hessian eigenvalue")
    c.set_title("(c) edge of stability", fontsize=9)
    c.legend(fontsize=7)

    for k, r in enumerate(main):
        d.plot(
            r.val_excess(),
            [p.trace for p in r.projected],
            "o",
            ms=3,
            color=SERIES[k % len(SERIES)],
            label=f"seed {r.seed}",
        )
    d.set_xlabel("validation loss above H(q) (nats)")
    d.set_ylabel("Hessian trace tr H")
    d.set_title(f"(d) mean Spearman ρ = {summary.val_rho.value:.2f}", fontsize=9)
    d.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


@styled
def random_label_figure(runs: Sequence[TraceRun]) -> Figure:
    """Fig. 4(b)–(c): the trace along the valley of the random-label path, validation loss on a
    second axis."""
    fig, axes = plt.subplots(1, len(runs), figsize=(6.4 * len(runs), 4.0), squeeze=False)
    for ax, r in zip(axes[0], runs, strict=True):
        ax.errorbar(
            _epochs(r),
            [p.trace for p in r.projected],
            yerr=[p.trace_se for p in r.projected],
            fmt="o-",
            ms=3,
            color=SGD_NOISE,
            label="tr H at the projected points",
        )
        ax.set_xlabel("epoch of SGD on A")
        ax.set_ylabel("Hessian trace tr H")
        twin = ax.twinx()
        twin.plot(_epochs(r), r.val_excess(), "s--", ms=3, color=VAL, label="validation loss")
        twin.set_ylabel("validation loss above H(q) (nats)")
        lines = ax.get_legend_handles_labels()
        more = twin.get_legend_handles_labels()
        ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=7)
        ax.set_title(f"{r.cfg.name}, seed {r.seed}", fontsize=9)
    fig.tight_layout()
    return fig


def _ci(iv, spec: str = ".3g") -> str:
    if math.isnan(iv.lo):
        return f"{iv.value:{spec}}"
    return f"{iv.value:{spec}} [{iv.lo:{spec}}, {iv.hi:{spec}}]"


def slope_table(summaries: Sequence[TraceSummary]):
    """Per network and quantity: the mean slope per epoch over the valley with its 95 % t
    interval across seeds, the slope relative to the mean, and the fraction of seeds whose
    slope is negative."""
    rows = []
    for s in summaries:
        rows += [
            [
                s.name,
                "tr H, projected points",
                _ci(s.trace_slope),
                _ci(s.relative_slope, ".2%"),
                f"{s.frac_seeds_decreasing:.0%}",
            ],
            [
                s.name,
                "scale-invariant tr(DH)",
                _ci(s.invariant_slope),
                _ci(s.invariant_relative_slope, ".2%"),
                f"{s.frac_invariant_decreasing:.0%}",
            ],
            [s.name, "tr H, SGD states", _ci(s.sgd_slope), "", f"{s.frac_sgd_decreasing:.0%}"],
            [s.name, "validation loss (nats)", _ci(s.val_slope), "", ""],
        ]
    return markdown_table(
        [
            "network",
            "quantity",
            "slope per epoch [95 % CI]",
            "relative slope per epoch",
            "seeds with slope < 0",
        ],
        rows,
    )


def layer_table(changes: Sequence[LayerChange]):
    """Per module: weight norm and block trace at the first and last point of the valley
    (means over seeds), the ratio of the block traces and the ratio norm growth predicts."""
    rows = [
        [
            c.module,
            c.kind,
            "yes" if c.invariant else "no",
            f"{c.norm_first:.2f} → {c.norm_last:.2f}",
            f"{c.trace_first:.2f} → {c.trace_last:.2f}",
            f"{c.ratio:.2f}",
            f"{c.predicted:.2f}" if c.invariant else "—",
        ]
        for c in changes
    ]
    return markdown_table(
        [
            "module",
            "kind",
            "scale-invariant groups",
            "‖θ_l‖ first → last",
            "tr H_ll first → last",
            "ratio",
            "ratio from norm growth alone",
        ],
        rows,
    )


def config_table(tcfg: TraceConfig, configs: Sequence[PathConfig] | None = None):
    """The networks measured, with the seeds and the estimators' budgets."""
    rows = [
        [
            c.name,
            f"{c.dataset}",
            f"{c.lr:g} / {c.momentum:g} / {c.batch_size}",
            c.epochs,
            tcfg.seeds,
            tcfg.points,
            tcfg.budget,
            tcfg.lanczos_steps,
        ]
        for c in (configs or tcfg.paths)
    ]
    return markdown_table(
        [
            "network",
            "data",
            "η / μ / S",
            "epochs",
            "seeds",
            "points per path",
            "Hutch++ products",
            "Lanczos steps",
        ],
        rows,
    )
