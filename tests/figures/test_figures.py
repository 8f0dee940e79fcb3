"""Figures: each builds from small inputs, labels its axes, and leaves the caller's matplotlib
settings untouched (the house style is applied in a context, never globally)."""

from __future__ import annotations

import matplotlib as mpl
import matplotlib.pyplot as plt
import pytest
import torch

from hessnoise import valley as V
from hessnoise.experiments import designing_noise as dn
from hessnoise.experiments import minimal_valley as mv
from hessnoise.experiments import trace_decrease as td
from hessnoise.figures import curvature as fc
from hessnoise.figures import designing_noise as fd
from hessnoise.figures import minimal_valley as fm
from hessnoise.figures import trace_decrease as ft
from hessnoise.figures.style import STYLE, styled


@pytest.fixture
def rc_guard():
    before = {k: mpl.rcParams[k] for k in STYLE}
    yield
    after = {k: mpl.rcParams[k] for k in STYLE}
    assert after == before, "a figure function changed global matplotlib settings"


def labelled(fig) -> bool:
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    ok = all(ax.get_xlabel() and ax.get_ylabel() for ax in axes)
    plt.close(fig)
    return ok


def test_style_applies_inside_only(rc_guard):
    @styled
    def probe():
        return mpl.rcParams["axes.spines.top"], mpl.rcParams["figure.dpi"]

    assert probe() == (False, 110)


def test_toy_chapter_figures_build(rc_guard):
    cfg = mv.MinimalValleyConfig(replicas=64, etas=(0.05,), relax_equil=1, relax_measure=2)
    assert labelled(fm.valley_slice(V.trace_toy(), cfg.theta_hat0))
    assert labelled(fm.fdr_figure(mv.fdr_sweep(cfg, 0)))
    tcfg = td.TraceDecreaseConfig(
        replicas=64, etas=(0.001, 0.002, 0.004), momentum_etas=(0.001,), label_etas=(0.001,),
        equil_steps=10, measure_steps=20,
    )  # fmt: skip
    runs = td.drift_sweep(V.trace_toy(), V.HessianNoise(tcfg.kappa), tcfg.etas, tcfg, seed=0)
    grad_sq = td.grad_trace_sq(V.trace_toy(), tcfg.theta_hat0)
    thm1 = td.theorem1_check(runs, tcfg.kappa, grad_sq, 1.0)
    assert labelled(ft.eq11_figure(runs, tcfg.kappa))
    assert labelled(ft.fig2b(runs, thm1, tcfg.kappa, grad_sq))
    assert labelled(ft.momentum_figure(runs, runs, tcfg.kappa, grad_sq))
    dcfg = dn.DesigningNoiseConfig(replicas=64, steps=100, record_every=50, early_steps=50,
                                   grid_replicas=8)  # fmt: skip
    race = dn.race(dcfg, 0)
    assert labelled(fd.fig2cd(race)) and labelled(fd.plane_figure(race))
    assert labelled(fd.grid_figure(dn.grid_race(dcfg, 0), dcfg.theta_hat0))


def test_curvature_figures_build(rc_guard):
    lam = torch.linspace(-0.1, 3.0, 40, dtype=torch.float64)
    assert labelled(fc.spectrum_figure(lam))
    grid = torch.linspace(-0.5, 3.5, 50, dtype=torch.float64)
    assert labelled(fc.density_figure(grid, torch.ones(50, dtype=torch.float64), lam, 0.1))
    study = {"Hutchinson": {"values": torch.randn(30), "std_empirical": 1.0}}
    assert labelled(fc.trace_estimates_figure(study, 0.0, 10))


def test_bench_table_puts_the_gpu_run_beside_the_cpu_run():
    cpu = {
        "targets": [
            {"key": "a", "value": 2.0, "target": ">= 1", "passed": True},
            {"key": "b", "value": None, "target": "<= 1", "passed": None},
        ]
    }
    gpu = {"targets": [{"key": "a", "value": 0.5, "target": ">= 1", "passed": False},
                       {"key": "c", "value": 3.0, "target": "<= 360", "passed": True}]}  # fmt: skip
    alone = str(fc.bench_table(cpu))
    assert "GPU" not in alone and "| a | 2.00 | >= 1 | met |" in alone
    both = str(fc.bench_table(cpu, gpu))
    assert "| a | 2.00 | >= 1 | met | 0.50 | >= 1 | **missed** |" in both
    assert "| b | n/a | <= 1 | n/a |  |  |  |" in both  # a CPU-only row
    assert "| c |  |  |  | 3.00 | <= 360 | met |" in both  # a GPU-only row
