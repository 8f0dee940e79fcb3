"""The drift instrument against closed forms and against its own simulation."""

import math

import numpy as np
import pytest
import torch

from hessnoise import drift
from hessnoise import valley as V

F64 = torch.float64


def test_constant_valley_does_not_drift():
    lam = torch.tensor([2.0, 5.0], dtype=F64)
    flat = V.Valley(lambda th: lam.expand(th.shape[0], -1) + 0 * th[:, :1], n=2, m=1)
    m = drift.measure_drift(flat, V.HessianNoise(0.1), (0.0,), 0.05, replicas=64, steps=50, seed=0)
    assert m.delta["trace"].abs().max() == 0 and m.predicted["trace"].abs().max() == 0


def test_measured_drift_matches_exact_prediction_on_the_trace_toy():
    """Simulation (the SGD loop) against theory (drift_rates): agreement within 4 s.e."""
    toy = V.trace_toy()
    m = drift.measure_drift(
        toy,
        V.HessianNoise(0.01),
        (10.0, 5.0),
        0.02,
        replicas=2048,
        steps=400,
        equil_steps=200,
        seed=3,
    )
    diff = m.delta["trace"] - m.predicted["trace"]
    se = diff.std() / math.sqrt(diff.numel())
    assert diff.mean().abs() < 4 * se
    assert (m.delta["trace"].mean() / m.predicted["trace"].mean() - 1).abs() < 0.02
    np.testing.assert_allclose(m.theta_sq_ratio.mean(0).numpy(), 1.0, atol=0.02)
    # leading order: −η²κ‖∇̂T‖²/4 per step, ‖∇̂T‖² = 52
    np.testing.assert_allclose(
        m.predicted_leading["trace"].numpy(), -400 * 0.02**2 * 0.01 * 52 / 4, rtol=1e-12
    )


def test_recorded_trajectories_have_the_right_shape():
    m = drift.measure_drift(
        V.logdet_toy(),
        V.IsotropicNoise(0.01),
        (0.5, -0.5),
        0.1,
        replicas=8,
        steps=30,
        record={"trace": V.trace_fn},
        record_every=10,
        seed=0,
    )
    assert m.record_steps.tolist() == [0, 10, 20, 30]
    assert m.trajectory["trace"].shape == (4, 8)
    start = V.logdet_toy().trace(V.replicas((0.5, -0.5), 1))
    assert torch.allclose(m.trajectory["trace"][0], start.expand(8))


def test_matched_isotropic_noise_has_the_same_stationary_loss():
    toy = V.logdet_toy()
    th0, kappa, eta = (0.5, -0.5), 0.004, 0.1
    c = drift.matched_isotropic(toy, kappa, th0, eta)
    lam = toy.eigenvalues(V.replicas(th0, 1))
    l_sgd = drift.stationary_loss(lam, kappa * lam, eta)
    l_iso = drift.stationary_loss(lam, torch.full_like(lam, c), eta)
    assert torch.allclose(l_sgd, l_iso, rtol=1e-13)
    # η → 0: c = κ T / n, the same noise power tr C
    c0 = drift.matched_isotropic(toy, kappa, th0, 1e-9)
    assert c0 == pytest.approx(kappa * lam.sum().item() / 2, rel=1e-8)


def test_loss_efficiency_closed_forms():
    toy = V.logdet_toy()
    th = V.replicas((0.5, -0.5), 1)
    lam = toy.eigenvalues(th)[0]
    eta = 0.01
    g = toy.lam_jacobian(th)[0] @ toy.spectral_grad(V.trace_fn, th)[0]  # g_j = ∇̂T·∇̂λ_j
    sgd = drift.loss_efficiency(toy, V.HessianNoise(0.3), V.trace_fn, th, eta).item()
    iso = drift.loss_efficiency(toy, V.IsotropicNoise(0.7), V.trace_fn, th, eta).item()
    assert sgd == pytest.approx(-eta * g.sum().item() / lam.sum().item(), rel=1e-12)
    assert iso == pytest.approx(-eta * (g / lam).sum().item() / 2, rel=1e-12)


def test_bad_arguments():
    with pytest.raises(ValueError, match="replicas=0"):
        drift.measure_drift(V.trace_toy(), V.NoNoise(), (1.0, 1.0), 0.1, replicas=0, steps=1)
    with pytest.raises(ValueError, match="record_every=None"):
        drift.measure_drift(
            V.trace_toy(),
            V.NoNoise(),
            (1.0, 1.0),
            0.1,
            replicas=1,
            steps=1,
            record={"t": V.trace_fn},
        )
