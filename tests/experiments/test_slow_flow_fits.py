"""The slow-flow fits on synthetic runs with known rates (plain numbers): each replica's
slope, the ratios to the predictions, pooling, the collapse pairs and the verdicts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hessnoise.experiments import slow_flow_fits as fits
from hessnoise.experiments.slow_flow_runs import FlowRun, FlowSweep
from hessnoise.stats import Estimate


class FakePrediction:
    """Just what the fits read from a prediction: the tangential directions and the
    second-order Gauss–Newton excess."""

    tangent_grad = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)

    def regularizer_grad(self, eta):
        return torch.tensor([1.0, eta, 0.0], dtype=torch.float64)

    def gn_excess(self, eta, batch_size, taus):
        return -0.01 * np.asarray(taus)


def fake_run(eta, s, rate, predicted, gen, noise=0.01, replicas=6, taus=(10.0, 20.0, 40.0)):
    taus = np.asarray(taus)
    times = np.concatenate([[0.0], taus])
    gf = rate * times + noise * gen.standard_normal((replicas, times.size)) * np.sqrt(times)
    gn = 1.5 * gf
    return FlowRun(eta, s, eta / (4 * s), taus, gf, gn,
                   torch.tensor([-1.0, -0.05, 0.01], dtype=torch.float64), 0.1, 1e-4,
                   predicted, predicted / 1.05)  # fmt: skip


def test_each_replicas_slope_is_recovered_without_noise():
    gen = np.random.default_rng(0)
    run = fake_run(0.05, 10, -0.02, -0.02, gen, noise=0.0)
    np.testing.assert_allclose(run.slopes("gf"), -0.02, rtol=1e-12)
    fit = fits.fit_run(run, FakePrediction())
    assert fit.ratio.value == pytest.approx(1) and fit.ratio.se == pytest.approx(0, abs=1e-12)
    assert fit.leading_ratio.value == pytest.approx(1.05)
    assert fit.gn_ratio.value == pytest.approx(1.5)
    assert fit.cosine == pytest.approx(1 / np.sqrt(1 + 0.05**2 + 0.01**2))


def test_pooled_is_the_inverse_variance_mean():
    p = fits.pooled([Estimate(1.0, 0.1, 4), Estimate(2.0, 0.2, 4)])
    assert p.value == pytest.approx((1 / 0.01 + 2 / 0.04) / (1 / 0.01 + 1 / 0.04))
    assert p.se == pytest.approx(1 / np.sqrt(1 / 0.01 + 1 / 0.04)) and p.n == 8


def sweep_with(ratio_of, gen):
    """η sweep (0.01, 0.02, 0.04) at S = 4 and S sweep (2, 4, 8) at η = 0.02: pairs at
    𝒞 = 0.01/16 and 0.04/16; the measured rate is ratio_of(η, S) × the prediction."""
    made = {}
    for eta, s in [(0.01, 4), (0.02, 4), (0.04, 4), (0.02, 2), (0.02, 8)]:
        pred = -eta / (4 * s)
        made[eta, s] = fake_run(eta, s, ratio_of(eta, s) * pred, pred, gen, noise=1e-6)
    return FlowSweep([made[e, 4] for e in (0.01, 0.02, 0.04)],
                     [made[0.02, s] for s in (2, 4, 8)])  # fmt: skip


def test_a_sweep_on_the_prediction_confirms_everything():
    sw = sweep_with(lambda eta, s: 1.0, np.random.default_rng(1))
    fit = fits.fit_seed(0, sw, FakePrediction())
    assert len(fit.pairs) == 2 and fit.collapse_z < 3
    assert fit.drift_ratio.value == pytest.approx(1, abs=0.01)
    assert fit.drift_ratio.n == 12  # the two runs at the smallest 𝒞, six replicas each
    over = fits.across_seeds([fit], 0.1, 0.8, 3.0)
    assert over.rate_holds and over.every_c_holds and over.direction_holds
    assert over.collapse_holds


def test_a_drift_that_grows_with_c_fails_only_away_from_the_smallest_c():
    sw = sweep_with(lambda eta, s: 1 + 100 * eta / (4 * s), np.random.default_rng(2))
    fit = fits.fit_seed(0, sw, FakePrediction())
    assert fit.slope == pytest.approx(100, rel=0.05) and fit.intercept == pytest.approx(1, abs=0.02)
    over = fits.across_seeds([fit], 0.1, 0.8, 3.0)
    assert over.rate_holds and not over.every_c_holds
    assert over.worst_c == pytest.approx(0.04 / 16)  # ratio 1.25 there, 1.06 at the smallest
    assert over.collapse_holds  # a function of 𝒞 alone still collapses


def test_a_drift_that_depends_on_eta_apart_from_c_does_not_collapse():
    sw = sweep_with(lambda eta, s: 1 + 5 * eta, np.random.default_rng(3))
    fit = fits.fit_seed(0, sw, FakePrediction())
    assert fit.collapse_z > 3
    assert not fits.across_seeds([fit], 0.1, 0.8, 3.0).collapse_holds


def test_series_fit_reads_the_gauss_newton_excess():
    gen = np.random.default_rng(4)
    run = fake_run(0.05, 10, -0.02, -0.02, gen, noise=1e-3, taus=(1.0, 5.0, 10.0))
    s = fits.fit_series(run, FakePrediction(), 3.0)
    # gn = 1.5 gf: excess = 0.5 × (−0.02 τ) against the fake prediction −0.01 τ
    np.testing.assert_allclose(s.gn_excess_ratio, 1.0, rtol=0.05)
    assert s.follows and s.z.shape == (3,)
