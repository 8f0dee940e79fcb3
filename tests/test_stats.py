"""hessnoise.stats against scipy and against simulation: line fits and their intervals, means
with standard errors, z between estimates, bootstrap and t intervals, χ² against zero."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from hessnoise import stats


def test_line_fit_is_scipy_linregress_with_t_intervals():
    x = np.linspace(0.1, 2.0, 9)
    y = -3.0 * x + 0.5 + 0.1 * np.sin(7 * x)
    fit, ref = stats.line_fit(x, y), sps.linregress(x, y)
    assert fit.slope == pytest.approx(ref.slope, rel=1e-12)
    assert fit.intercept == pytest.approx(ref.intercept, rel=1e-12)
    assert fit.r2 == pytest.approx(ref.rvalue**2, rel=1e-12)
    assert fit.se_slope == pytest.approx(ref.stderr, rel=1e-12)
    assert fit.se_intercept == pytest.approx(ref.intercept_stderr, rel=1e-12)
    t = sps.t.ppf(0.975, 7)
    assert fit.ci_slope == pytest.approx((ref.slope - t * ref.stderr, ref.slope + t * ref.stderr))
    exact = stats.line_fit(x, 2 * x - 1)
    assert (exact.slope, exact.intercept, exact.r2) == pytest.approx((2, -1, 1), abs=1e-12)


def test_line_fit_intervals_cover_the_true_slope_at_their_level():
    rng = np.random.default_rng(0)
    x = np.linspace(0, 1, 6)
    trials = 2000
    hits = sum(
        stats.line_fit(x, -4 * x + rng.normal(0, 0.3, 6)).slope_interval.contains(-4)
        for _ in range(trials)
    )
    # binomial s.e. of the coverage at 95 %: sqrt(.95·.05/2000) ≈ 0.5 %; allow 4 of them
    assert abs(hits / trials - 0.95) < 0.02


def test_line_fit_refuses_degenerate_input():
    with pytest.raises(ValueError, match="constant"):
        stats.line_fit([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="length"):
        stats.line_fit([1.0, 2.0], [1.0, 2.0])


def test_two_term_fit_and_exponent_recover_known_laws():
    x = np.geomspace(1e-3, 1e-1, 7)
    assert stats.two_term_fit(x, -2 * np.sqrt(x) - 30 * x) == pytest.approx((-2, -30), rel=1e-10)
    assert stats.power_law_exponent(x, -5 * x**0.7) == pytest.approx(0.7, rel=1e-12)
    with pytest.raises(ValueError, match="one sign"):
        stats.power_law_exponent(x, np.sin(100 * x))


def test_mean_se_and_z_between_against_direct_formulas():
    a = np.array([1.0, 2.0, 4.0, 7.0])
    est = stats.mean_se(a)
    assert est.value == 3.5 and est.n == 4
    assert est.se == pytest.approx(np.std(a, ddof=1) / 2, rel=1e-15)
    b = stats.Estimate(1.0, 0.5)
    assert stats.z_between(est, b) == pytest.approx(2.5 / math.hypot(est.se, 0.5))
    assert format(stats.Estimate(1.23456, 0.01), ".3f") == "1.235 ± 0.010"


def test_z_between_is_standard_normal_under_the_null():
    # simulation: two independent means of the same distribution
    rng = np.random.default_rng(3)
    z = [
        stats.z_between(stats.mean_se(rng.normal(size=50)), stats.mean_se(rng.normal(size=80)))
        for _ in range(3000)
    ]
    # sd of a sample sd of 3000 normals ≈ 1.3 %; t-tails add ~1 %: allow 5 %
    assert np.std(z) == pytest.approx(1.0, abs=0.05) and abs(np.mean(z)) < 0.06


def test_t_interval_is_scipy_t_interval():
    x = np.array([0.7, 0.75, 0.72, 0.8])
    iv = stats.t_interval(x)
    lo, hi = sps.t.interval(0.95, 3, loc=x.mean(), scale=sps.sem(x))
    assert (iv.value, iv.lo, iv.hi) == pytest.approx((x.mean(), lo, hi), rel=1e-12)
    assert iv.contains(0.75) and not iv.contains(1.0)
    assert format(iv, ".2f").startswith("0.74 [")


def test_bootstrap_interval_is_the_percentile_interval_and_tolerates_nan():
    reps = np.arange(1001, dtype=float)
    iv = stats.bootstrap_interval(500.0, reps)
    assert (iv.lo, iv.hi) == pytest.approx((25.0, 975.0))
    nan = stats.bootstrap_interval(1.0, [np.nan, np.nan])
    assert math.isnan(nan.lo) and not nan.contains(1.0)


def test_chi2_zero_against_scipy():
    est = [stats.Estimate(0.1, 0.05), stats.Estimate(-0.2, 0.1), stats.Estimate(0.0, 0.3)]
    chi2, dof, p = stats.chi2_zero(est)
    assert (chi2, dof) == (pytest.approx(8.0), 3)
    assert p == pytest.approx(sps.chi2.sf(8.0, 3), rel=1e-12)
