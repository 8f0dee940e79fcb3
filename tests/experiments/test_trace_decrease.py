import math

import pytest
import torch

from hessnoise import valley as V
from hessnoise.experiments import trace_decrease as td
from hessnoise.scales import SCALES


@pytest.mark.parametrize("scale", SCALES)
def test_configs(scale):
    cfg = td.TraceDecreaseConfig.for_scale(scale)
    assert (
        cfg.replicas >= 1000 and cfg.equil_steps == cfg.measure_steps == 1000
    )  # the paper's protocol
    assert 0 < cfg.kappa < 1


def test_config_validation():
    with pytest.raises(ValueError, match="stride=7 must divide measure_steps=1000"):
        td.TraceDecreaseConfig(
            replicas=10, etas=(0.1,), momentum_etas=(0.1,), label_etas=(0.1,), stride=7
        )
    with pytest.raises(ValueError, match="beta=1"):
        td.TraceDecreaseConfig(
            replicas=10, etas=(0.1,), momentum_etas=(0.1,), label_etas=(0.1,), beta=1
        )


def test_rates_and_the_factor_two():
    assert td.grad_trace_sq(V.trace_toy(), (10.0, 5.0)) == pytest.approx(52.0)
    assert td.rate_leading(0.1, 0.01, 52.0) == pytest.approx(-0.01 * 0.01 * 13)
    assert td.rate_paper(0.1, 0.01, 52.0) == pytest.approx(2 * td.rate_leading(0.1, 0.01, 52.0))
    assert td.rate_leading(0.1, 0.01, 52.0, beta=0.9) == pytest.approx(
        100 * td.rate_leading(0.1, 0.01, 52.0)
    )


def synthetic_runs(a, b, etas, steps=1000, se_rel=1e-3):
    """Runs whose mean ΔT is exactly N η² (a + b η)."""
    runs = []
    for eta in etas:
        mean = steps * eta**2 * (a + b * eta)
        spread = abs(mean) * se_rel * math.sqrt(100)
        delta = mean + spread * torch.tensor([1.0, -1.0] * 50, dtype=torch.float64)
        runs.append(
            td.DriftRun(
                eta,
                0.0,
                "x",
                delta,
                delta.clone(),
                torch.ones(2),
                torch.ones(2),
                torch.ones(2),
                eta * 40,
                steps,
            )
        )
    return runs


def test_leading_coefficient_recovers_a_known_law():
    runs = synthetic_runs(-0.13, -2.5, [0.0005, 0.001, 0.002, 0.004, 0.03])
    fit = td.leading_coefficient(runs, max_eta_lam=0.2)
    assert fit.n_points == 4
    assert fit.a == pytest.approx(-0.13, rel=1e-9) and fit.b == pytest.approx(-2.5, rel=1e-6)
    with pytest.raises(ValueError, match="only 1 learning rates qualify"):
        td.leading_coefficient(runs, max_eta_lam=0.03)


def test_breakdown_finds_the_first_departure():
    runs = synthetic_runs(-0.13, -2.5, [0.0005, 0.001, 0.02, 0.04])
    # ΔT / leading = 1 + (b/a) η: 1.0096, 1.019, 1.38, ...
    assert td.breakdown_eta_lam(runs, lambda e: -0.13 * e**2) == pytest.approx(0.02 * 40)
    assert td.breakdown_eta_lam(runs[:2], lambda e: -0.13 * e**2) == math.inf


def test_tiny_sweep_agrees_with_exact_theory():
    cfg = td.TraceDecreaseConfig(
        replicas=1024,
        etas=(0.004, 0.03),
        momentum_etas=(0.001,),
        label_etas=(0.004,),
        equil_steps=200,
        measure_steps=200,
    )
    runs = td.drift_sweep(V.trace_toy(), V.HessianNoise(cfg.kappa), cfg.etas, cfg, seed=1)
    assert [r.eta for r in runs] == [0.004, 0.03] and runs[0].delta.shape == (1024,)
    for r in runs:
        assert r.exact_relerr < 5 * r.exact_relerr_se + 1e-3
        assert (r.theta_sq_ratio - 1).abs().max() < 0.03


def test_theorem1_check_and_noise_comparison_on_known_runs():
    # runs whose drift is exactly the corrected Theorem 1: the check must say so
    kappa, grad_sq = 0.01, 52.0
    runs = [
        td.DriftRun(
            eta=e, beta=0.0, noise="κH", steps=1000,
            delta=torch.full((64,), td.rate_leading(e, kappa, grad_sq) * 1000, dtype=torch.float64)
            + 1e-13 * torch.randn(64, dtype=torch.float64),
            predicted=torch.full((64,), td.rate_leading(e, kappa, grad_sq) * 1000,
                                 dtype=torch.float64),
            theta_sq_ratio=torch.ones(2), theta_sq=torch.ones(2), lam=torch.ones(2),
            eta_lam_max=e * 40,
        )
        for e in (0.001, 0.002, 0.004)
    ]  # fmt: skip
    thm1 = td.theorem1_check(runs, kappa, grad_sq, max_eta_lam=0.2)
    assert thm1.coefficient_relerr < 1e-6 and thm1.printed_over_measured == pytest.approx(2.0)
    assert thm1.corrected == pytest.approx(-kappa * grad_sq / 4)
    assert td.leading_ratios(runs, kappa, grad_sq, 0.0) == pytest.approx([1.0] * 3, rel=1e-9)
    zs = td.noise_comparison(runs, runs)
    assert zs == pytest.approx([0.0] * 3)
