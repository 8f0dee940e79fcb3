"""The slow-flow prediction on a real (tiny_flow) network, against independent references: the
exact gradient of the trace against central differences, the sampled-label noise against H/S,
and the closed forms of the prediction's pieces (the floor's frame and trace are tested in
test_slow_flow_floor.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from slow_flow_tiny import tiny_config

from hessnoise.experiments import slow_flow as sf
from hessnoise.scales import SCALES

F64 = torch.float64


@pytest.mark.parametrize("scale", SCALES)
def test_configs_exist_for_every_scale(scale):
    cfg = sf.SlowFlowConfig.for_scale(scale)
    cs = [cfg.noise_scale(e, s) for e, s in cfg.runs]
    assert len(cs) == len(set(cfg.runs))  # every (η, S) once, the centre included once
    # the two sweeps meet at equal 𝒞 beyond the centre (the collapse test compares them)
    eta_c = {cfg.noise_scale(e, cfg.batch_size0) for e in cfg.etas}
    s_c = {cfg.noise_scale(cfg.eta0, s) for s in cfg.batch_sizes}
    assert len(eta_c & s_c) >= 2
    assert cfg.taus[-1] == cfg.tau_window and cfg.reference_flow_time > cfg.flow_time


def test_small_scale_meets_the_issue():
    cfg = sf.SlowFlowConfig.for_scale("small")
    assert len({cfg.noise_scale(e, s) for e, s in cfg.runs}) >= 5 and cfg.seeds >= 3
    assert cfg.floor.n == 50 and cfg.floor.hidden == 24  # the 1,450-parameter network


@pytest.mark.parametrize(
    ("change", "match"),
    [({"eta0": 0.2}, "eta0=0.2"), ({"batch_size0": 3}, "batch_size0=3"),
     ({"batch_sizes": (2, 4, 11)}, r"batch_sizes\[2\]=11"), ({"etas": (0.05, -0.1)}, "etas"),
     ({"replicas": 1}, "replicas=1"), ({"points": 0}, "points=0"),
     ({"reference_flow_time": 5.0}, "reference_flow_time=5.0"), ({"flow_step": 0}, "flow_step")],
)  # fmt: skip
def test_config_refuses_bad_values_naming_them(change, match):
    with pytest.raises(ValueError, match=match):
        tiny_config(**change)


def test_runs_and_noise_scale():
    cfg = tiny_config()
    assert cfg.runs == [(0.025, 4), (0.05, 4), (0.1, 4), (0.05, 2), (0.05, 8)]
    assert cfg.noise_scale(0.1, 4) == pytest.approx(0.1 / 16)


# --------------------------------------------------------------------------------------------
# The prediction
# --------------------------------------------------------------------------------------------
def test_exact_gradient_of_the_trace_against_central_differences(tiny_flow):
    pb, pred = tiny_flow.problem, tiny_flow.pred
    gen = torch.Generator().manual_seed(1)
    assert sf.trace_fd_relerr(pb, pred, pred.tangent_grad) < 1e-6
    assert sf.trace_fd_relerr(pb, pred, torch.randn(pb.n_params, generator=gen, dtype=F64)) < 1e-6
    assert pred.sum_relerr < 1e-10


def test_sampled_label_noise_is_h_over_s_on_the_floor_only(tiny_flow):
    pb, pred = tiny_flow.problem, tiny_flow.pred
    assert sf.label_noise_relerr(pb, pred.theta) < 1e-10
    # off the floor the per-sample gradients do not vanish and the identity fails
    assert sf.label_noise_relerr(pb, pb.theta_init) > 1e-3


def test_prediction_pieces_against_their_closed_forms(tiny_flow):
    pred = tiny_flow.pred
    lam = pred.lam.numpy()
    assert pred.shares.sum() == pytest.approx(1, abs=1e-10)
    assert pred.factor(0.0) == pytest.approx(1, abs=1e-12)
    assert pred.factor(0.05) == pytest.approx((pred.shares * 2 / (2 - 0.05 * lam)).sum())
    assert pred.rate(0.05, 4, finite=False) == pytest.approx(-0.05 / 16 * pred.grad_sq)
    assert pred.rate(0.05, 4) == pytest.approx(pred.rate(0.05, 4, finite=False) * pred.factor(0.05))
    torch.testing.assert_close(4 * pred.regularizer_grad(1e-12), pred.tangent_grad, rtol=1e-9,
                               atol=1e-12)  # fmt: skip
    # the finite-η rate is −4𝒞⟨P∇T, P∇R_η⟩
    assert pred.rate(0.05, 4) == pytest.approx(
        -4 * 0.05 / 16 * (pred.tangent_grad @ pred.regularizer_grad(0.05)).item(), rel=1e-10
    )
    assert pred.cut_change(lam.min() / 2) == 0.0
    assert pred.cut_change(2 * lam.max()) == pytest.approx(pred.normal_grad_sq / pred.grad_sq)
    assert pred.share_below(lam.min() / 2) == 0 and pred.share_below(np.inf) == pytest.approx(1)


def test_gauss_newton_excess_builds_up_to_the_stationary_one(tiny_flow):
    pred = tiny_flow.pred
    lam = pred.lam.numpy()
    eta, s = 0.05, 4
    exc = pred.gn_excess(eta, s, np.array([0.0, 1.0, 1e9]))
    assert exc[0] == 0 and exc[1] != 0
    stationary = -((eta / s) / (2 - eta * lam) * pred.shares / (4 * lam)).sum() * pred.grad_sq
    assert exc[2] == pytest.approx(stationary, rel=1e-9)


def test_prediction_facts_are_numbers(tiny_flow):
    facts = sf.prediction_facts(tiny_flow.pred, tiny_config())
    assert all(isinstance(v, (int, float)) for v in facts.values())
    assert 0 <= facts["share_window"] <= 1 and facts["factor_eta0"] > 1


def test_floor_changes_invalidate_nothing_shared(tiny_flow):
    # the prediction does not modify the problem's network or the floor it was given
    before = tiny_flow.problem.net.theta0().clone()
    sf.predict(tiny_flow.problem, tiny_flow.floor.theta)
    torch.testing.assert_close(tiny_flow.problem.net.theta0(), before)
    assert dataclasses.is_dataclass(tiny_flow.pred)
