"""The slow-flow runs on the tiny network: the instrument's checks (the paper's protocol stays
on the floor, the limit map does not depend on the flow time, Gauss–Newton moves twice as
far to second order), the runs themselves, and resuming them from checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from slow_flow_tiny import tiny_config

from hessnoise.experiments import slow_flow_runs as runs


@pytest.fixture(scope="module")
def swept(tiny_flow, tmp_path_factory):
    cfg = tiny_config()
    ckpt = tmp_path_factory.mktemp("runs")
    return cfg, ckpt, runs.sweep(tiny_flow.problem, tiny_flow.pred, cfg, 0, ckpt)


def test_trace_at_a_floor_point_is_the_floor_trace(tiny_flow):
    theta, trace = runs.trace_at(tiny_flow.problem, tiny_flow.pred.theta)
    assert trace == pytest.approx(tiny_flow.pred.trace, rel=1e-12)
    assert (theta - tiny_flow.pred.theta).norm() < 1e-12


def test_paper_protocol_does_not_move_on_the_floor(tiny_flow):
    st = runs.static_run(tiny_flow.problem, tiny_flow.pred, tiny_config(), 0)
    assert st.max_sample_grad < 1e-12 and st.max_displacement < 1e-12
    assert abs(st.drift) < 1e-12


def test_limit_map_does_not_depend_on_the_flow_time(tiny_flow):
    cfg = tiny_config()
    theta = runs.end_state(tiny_flow.problem, tiny_flow.pred, cfg, 0.1, 4, 0)
    inv = runs.invariance(tiny_flow.problem, tiny_flow.pred, cfg, theta)
    assert inv.traces[2] < 0  # the floor's trace fell during the run
    assert inv.remainders[2] < inv.remainders[1] < inv.remainders[0]  # the flow relaxes
    assert inv.error < 0.01


def test_gauss_newton_moves_twice_as_far_as_the_limit_map(tiny_flow):
    n = tiny_flow.pred.lam.numel()
    gnf = runs.gauss_newton_factor(
        tiny_flow.problem, tiny_flow.pred, (n - 1, n - 30), (0.01, 0.001)
    )
    np.testing.assert_allclose(gnf.limit[:, -1], 1, atol=1e-3)
    np.testing.assert_allclose(gnf.gn[:, -1], 2, atol=0.02)


def test_runs_have_the_planned_shape_and_drift_down(swept):
    cfg, _, sw = swept
    assert len(sw.runs) == len(cfg.runs)
    for r in sw.runs:
        assert r.gf.shape == r.gn.shape == (cfg.replicas, cfg.points + 1)
        assert (r.gf[:, 0] == 0).all() and (r.gn[:, 0] == 0).all()
        assert r.C == pytest.approx(r.eta / (4 * r.batch_size))
        assert r.predicted < r.leading < 0  # finite η speeds the drift up
        assert r.slopes("gf").shape == (cfg.replicas,)
    # the noisiest run's floor trace falls, on average over its replicas
    noisiest = max(sw.runs, key=lambda r: r.C)
    assert noisiest.slopes("gf").mean() < 0
    # the centre run is shared by both sweeps
    centre = next(r for r in sw.eta_sweep if r.eta == cfg.eta0)
    assert any(r is centre for r in sw.batch_sweep)


def test_runs_resume_from_their_checkpoints_bit_for_bit(tiny_flow, swept):
    cfg, ckpt, sw = swept
    again = runs.sweep(tiny_flow.problem, tiny_flow.pred, cfg, 0, ckpt)
    assert all(r.resumed for r in again.runs)
    # a run whose checkpoint was lost (killed before it was written) is recomputed identically
    lost = sorted(ckpt.glob("*.pt"))[0]
    lost.unlink()
    third = runs.sweep(tiny_flow.problem, tiny_flow.pred, cfg, 0, ckpt)
    assert sum(not r.resumed for r in third.runs) == 1
    for a, b in zip(sw.runs, third.runs, strict=True):
        np.testing.assert_array_equal(a.gf, b.gf)
        np.testing.assert_array_equal(a.gn, b.gn)
        torch.testing.assert_close(a.displacement, b.displacement, rtol=0, atol=0)


def test_a_changed_criterion_reuses_the_runs(tiny_flow, swept):
    _, ckpt, _ = swept
    changed = tiny_config(tolerance=0.2, cosine_bound=0.5)
    assert all(
        r.resumed for r in runs.sweep(tiny_flow.problem, tiny_flow.pred, changed, 0, ckpt).runs
    )
    moved = tiny_config(flow_time=7.0)
    first = runs.flow_run(tiny_flow.problem, tiny_flow.pred, moved, 0.05, 4, 0, checkpoint_dir=ckpt)
    assert not first.resumed  # a different map is a different measurement


def test_series_uses_its_own_times(tiny_flow, tmp_path):
    cfg = tiny_config()
    ser = runs.series(tiny_flow.problem, tiny_flow.pred, cfg, 0, tmp_path)
    np.testing.assert_allclose(ser.taus, cfg.series_taus)
    assert ser.gf.shape == (cfg.series_replicas, len(cfg.series_taus) + 1)


@pytest.mark.slow
def test_limit_map_matches_long_gradient_flow_on_the_network(tiny_flow):
    """The reference the issue asks for: small-step gradient flow run long, then landed on the
    floor.  Its own error is the second-order term of what it leaves unrelaxed, which shrinks
    with the flow time, so the two must agree better the longer the reference runs."""
    from hessnoise import projection as pj

    cfg = tiny_config()
    theta = runs.end_state(tiny_flow.problem, tiny_flow.pred, cfg, 0.1, 4, 0)
    mapped = runs.trace_at(
        tiny_flow.problem, runs.limit_point(tiny_flow.problem, theta, cfg).theta
    )[1]
    gaps = []
    flowed, t = theta, 0.0
    for t_ref in (100.0, 1000.0):
        flowed = pj.gradient_flow(tiny_flow.problem.loss, flowed, t_ref - t, step=cfg.flow_step)
        t = t_ref
        gaps.append(abs(runs.trace_at(tiny_flow.problem, flowed)[1] - mapped))
    drift = abs(mapped - tiny_flow.pred.trace)
    assert gaps[1] < gaps[0] and gaps[1] < 0.02 * drift
