"""Figures and tables of the chapter "Minimal valleys in real networks" (Section 2.1.1, Fig. 1,
App. A.2, Fig. 4).  Training losses in one colour, validation losses in another, across every
figure; the threshold δ is the reference line; theory has no curve here, the claim is a bound."""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from hessnoise import models
from hessnoise.experiments.path_analysis import (
    PaperCost,
    PathSummary,
    RefinementLevel,
    path_curve,
)
from hessnoise.experiments.path_problem import PathConfig, network
from hessnoise.experiments.projected_paths import PathRun, RandomLabelRun
from hessnoise.figures.style import REFERENCE, SERIES, SGD_NOISE, styled
from hessnoise.report import markdown_table

TRAIN = SERIES[0]
VAL = SERIES[1]


def _path_panel(ax: Axes, run: PathRun, title: str) -> None:
    """Losses above H(q) along the projected path, projected points marked, δ dashed."""
    c = path_curve(run)
    ax.plot(c.epoch, c.train, color=TRAIN, lw=1.2, label="training, along the projected path")
    ax.plot(c.epoch, c.val, color=VAL, lw=1.2, label="validation, along the projected path")
    hit, miss = c.point_reached, ~c.point_reached
    ax.plot(c.point_epoch[hit], c.point_train[hit], "o", ms=2.5, color=TRAIN,
            label="projected point (reached δ)")  # fmt: skip
    if miss.any():
        ax.plot(c.point_epoch[miss], c.point_train[miss], "o", ms=4, mfc="none", color=SGD_NOISE,
                label="projection that missed δ (budget spent)")  # fmt: skip
    delta = run.threshold
    ax.axhline(delta, color=REFERENCE, ls="--", lw=1, label=f"threshold δ = {delta:g}")
    _log_y(ax)
    ax.set_xlabel("epoch of the SGD state projected")
    ax.set_ylabel("loss above its floor, L − H(q) (nats)")
    ax.set_title(title, fontsize=9)


def _two_and_five(v: float, _: int) -> str:
    """Minor log-axis labels at 2 and 5 times a power of ten only."""
    text = f"{v:g}"
    return text if text.lstrip("0.")[:1] in ("2", "5") else ""


def _log_y(ax: Axes) -> None:
    """A log y axis labelled in plain numbers (0.05, not 5×10⁻²)."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(_two_and_five))


def _inset(ax: Axes, states, threshold: float | None, label: str, where) -> None:
    """Training and validation loss at the end of each epoch of an SGD run, as an inset."""
    ins = ax.inset_axes(where)
    ep = [st.epoch for st in states]
    ins.plot(ep, [st.train_excess for st in states], color=TRAIN, lw=1)
    ins.plot(ep, [st.val_excess for st in states], color=VAL, lw=1)
    if threshold is not None:
        ins.axhline(threshold, color=REFERENCE, ls="--", lw=0.8)
    ins.set_yscale("log")
    ins.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ins.set_title(label, fontsize=7)
    ins.set_xlabel("epoch", fontsize=7, labelpad=1)
    ins.tick_params(labelsize=6, which="both")


@styled
def fig1_figure(runs: Sequence[PathRun]) -> Figure:
    """Fig. 1: training and validation loss along each projected path (main axes) and along the
    SGD path it projects (inset, at the end of every epoch)."""
    fig, axes = plt.subplots(1, len(runs), figsize=(6.8 * len(runs), 4.4), squeeze=False)
    for ax, run in zip(axes[0], runs, strict=True):
        _path_panel(ax, run, run.cfg.name)
        _inset(ax, run.states, run.threshold, "inset: the SGD path, end of each epoch",
               (0.52, 0.5, 0.45, 0.36))  # fmt: skip
    axes[0, 0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


@styled
def random_label_figure(rl_runs: Sequence[RandomLabelRun]) -> Figure:
    """Fig. 4(b)–(c): the projected path of SGD on the clean set A, started at the minimum that
    gradient descent on A reached from the network trained on A ∪ B (inset: training on
    A ∪ B, loss on A ∪ B and validation loss at the end of every epoch)."""
    fig, axes = plt.subplots(1, len(rl_runs), figsize=(6.8 * len(rl_runs), 4.4), squeeze=False)
    for ax, rl in zip(axes[0], rl_runs, strict=True):
        _path_panel(ax, rl.path, rl.path.cfg.name + ": SGD on A from a bad minimum")
        _inset(ax, rl.pretrain, None, "inset: SGD on A ∪ B (B shuffled), end of each epoch",
               (0.5, 0.46, 0.47, 0.33))  # fmt: skip
    axes[0, 0].legend(fontsize=7, loc="center left", bbox_to_anchor=(0.0, 0.45))
    fig.tight_layout()
    return fig


@styled
def projection_figure(runs: Sequence[PathRun], labels: Sequence[str]) -> Figure:
    """How the protocol went, per projected point and per segment.  Left: gradient-descent
    steps each projection took against the epoch of its SGD state, the budget dashed.  Right:
    the highest training loss on each final segment in units of δ (line connectedness is
    everything below 1), coloured by refinement depth."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for run, label, colour in zip(runs, labels, SERIES, strict=False):
        pts = [run.points[k] for k in run.steps()]
        ep = np.array([p.step / run.ipe for p in pts])
        steps = np.array([p.gd_steps for p in pts])
        hit = np.array([p.reached for p in pts])
        left.plot(ep[hit], steps[hit], "o", ms=3, color=colour, label=f"{label}: reached δ")
        if (~hit).any():
            left.plot(ep[~hit], steps[~hit], "o", ms=4, mfc="none", color=SGD_NOISE,
                      label=f"{label}: missed δ")  # fmt: skip
        left.axhline(run.cfg.max_steps, color=REFERENCE, ls="--", lw=1)
        seg_ep = np.array([s.a / run.ipe for s in run.segments])
        ratio = np.array([s.train.max().item() / run.threshold for s in run.segments])
        depth = np.array([s.depth for s in run.segments])
        sc = right.scatter(seg_ep, ratio, c=depth, cmap="viridis", s=10,
                           vmin=0, vmax=max(1, depth.max()))  # fmt: skip
    left.set_xlabel("epoch of the SGD state projected")
    left.set_ylabel("gradient-descent steps to reach δ")
    left.legend(fontsize=7)
    right.axhline(1.0, color=REFERENCE, ls="--", lw=1, label="threshold δ")
    _log_y(right)
    right.set_xlabel("epoch at the start of the segment")
    right.set_ylabel("highest training loss on the segment / δ")
    bar = fig.colorbar(sc, ax=right, label="refinement depth")
    bar.set_ticks(range(int(bar.vmax) + 1))
    right.legend(fontsize=7)
    fig.tight_layout()
    return fig


def config_table(configs: Sequence[PathConfig]):
    """The networks, data and hyperparameters of the runs, with their parameter counts."""
    rows = []
    for cfg in configs:
        p = models.n_params(network(cfg))
        side = f"{cfg.size}×{cfg.size}" if cfg.size else "full size"
        depth = "to adjacent iterations" if cfg.max_depth is None else f"≤ {cfg.max_depth} levels"
        rows.append([cfg.name, f"{p:,}", f"{cfg.dataset} {side}: {cfg.n_train:,} / {cfg.n_val:,}",
                     f"{cfg.lr:g} / {cfg.momentum:g} / {cfg.batch_size}", cfg.epochs,
                     f"{cfg.threshold:g}", cfg.max_steps, depth, cfg.dtype])  # fmt: skip
    return markdown_table(
        ["run", "parameters", "data (train / validation)", "η / μ / S", "epochs", "δ (nats)",
         "projection budget (steps)", "refinement", "dtype"], rows,
    )  # fmt: skip


def summary_table(summaries: Sequence[PathSummary]):
    """One row per projected path: points, connectedness, barrier, distances, validation."""

    def f(v: float, spec: str = ".3g") -> str:
        return "—" if isinstance(v, float) and math.isnan(v) else format(v, spec)

    rows = [[s.name, f"{s.projected_points} ({s.inserted_points} inserted)",
             s.missed_projections,
             f"{s.unconnected_segments} of {s.segments} ({s.unconnected_missed} / "
             f"{s.unconnected_adjacent} / {s.unconnected_depth})",
             f(s.valley_start, ".0f"), f(s.max_segment_excess_loss), f(s.barrier, ".2g"),
             f"{s.distance:.3g} / {s.sgd_distance:.3g}", f"{s.val_start:.3f} → {s.val_end:.3f}"]
            for s in summaries]  # fmt: skip
    return markdown_table(
        ["path", "projected points", "missed δ", "unconnected (missed end / adjacent / depth)",
         "valley from epoch", "max loss on a segment", "barrier", "distance: projected / SGD",
         "validation: first → last"], rows,
    )  # fmt: skip


def refinement_table(levels: Sequence[RefinementLevel]):
    """Per refinement depth, the segments tested between two minima: count, connected, mean
    length, largest rise above the higher endpoint."""
    rows = [[lv.depth, lv.tested, lv.connected, f"{lv.mean_length:.3g}", f"{lv.max_rise:.2g}"]
            for lv in levels]  # fmt: skip
    return markdown_table(
        ["depth", "segments between minima", "line-connected", "mean length |d|",
         "largest rise above the higher endpoint (nats)"], rows,
    )  # fmt: skip


def cost_table(costs: Sequence[PaperCost]):
    """The measured per-image cost of each paper network and the extrapolated hours."""
    rows = [[c.name, f"{c.params:,}", c.device, f"{c.seconds_per_image * 1e3:.1f}",
             f"{c.epoch_hours:.2f}", f"{c.points:,} × {c.steps_per_projection:.0f}",
             f"{c.run_hours:,.0f}"] for c in costs]  # fmt: skip
    return markdown_table(
        ["paper run", "parameters", "measured on", "forward + backward (ms / image)",
         "one epoch or GD step (h)", "projected points × GD steps", "full run (h)"], rows,
    )  # fmt: skip
