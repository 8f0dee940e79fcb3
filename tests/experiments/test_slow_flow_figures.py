"""The slow-flow figures and tables draw from real (tiny_flow) results, with labelled axes, and
leave matplotlib's global state alone."""

from __future__ import annotations

import matplotlib as mpl
import matplotlib.pyplot as plt
import pytest
from slow_flow_tiny import tiny_config

from hessnoise.experiments import slow_flow_fits as fits
from hessnoise.experiments import slow_flow_runs as runs
from hessnoise.figures import slow_flow as figs


@pytest.fixture(scope="module")
def drawn(tiny_flow, tmp_path_factory):
    cfg = tiny_config()
    sw = runs.sweep(tiny_flow.problem, tiny_flow.pred, cfg, 0, tmp_path_factory.mktemp("runs"))
    ser = runs.series(tiny_flow.problem, tiny_flow.pred, cfg, 0, tmp_path_factory.mktemp("series"))
    return cfg, fits.fit_seed(0, sw, tiny_flow.pred), ser


def test_figures_have_labelled_axes_and_keep_global_state(tiny_flow, drawn):
    cfg, fit, ser = drawn
    before = dict(mpl.rcParams)
    pred = tiny_flow.pred
    for fig in (figs.shares_figure(pred, cfg), figs.rate_figure([fit], cfg, cfg.tolerance),
                figs.series_figure(ser, pred)):  # fmt: skip
        assert all(ax.get_xlabel() for ax in fig.axes) and fig.axes[0].get_ylabel()
        plt.close(fig)
    assert dict(mpl.rcParams) == before


def test_tables_have_a_row_per_item(tiny_flow, drawn):
    cfg, fit, _ = drawn
    assert figs.runs_table([fit]).data.count("\n") == 1 + len(cfg.runs)
    assert figs.seeds_table([fit], [tiny_flow.pred]).data.count("\n") == 2
    n = tiny_flow.pred.lam.numel()
    gnf = runs.gauss_newton_factor(tiny_flow.problem, tiny_flow.pred, (n - 1,), (0.01, 0.001))
    assert figs.gauss_newton_table(gnf).data.count("\n") == 1 + 2
    theta = runs.end_state(tiny_flow.problem, tiny_flow.pred, cfg, 0.1, 4, 0)
    inv = runs.invariance(tiny_flow.problem, tiny_flow.pred, cfg, theta)
    assert figs.invariance_table(inv).data.count("\n") == 1 + 3
