"""The exact stationary statistics against an independent Lyapunov solve, a direct draw, and
the closed form of the leading-order drift."""

import numpy as np
import pytest
import scipy.linalg
import torch
from test_valley import const_valley

from hessnoise import valley as V
from hessnoise import valley_theory as VT

F64 = torch.float64


def lyapunov_theta_sq(lam, cov, eta, beta):
    """⟨θ²⟩ from the discrete Lyapunov equation of the (θ, v) linear system (scipy)."""
    a = np.array([[1 - eta * lam, beta], [-eta * lam, beta]])
    b = np.array([[-eta], [-eta]])
    sigma = scipy.linalg.solve_discrete_lyapunov(a, cov * b @ b.T)
    return sigma[0, 0], sigma[0, 1], sigma[1, 1]


@pytest.mark.parametrize("beta", [0.0, 0.5, 0.9])
@pytest.mark.parametrize("eta_lam", [0.01, 0.7, 1.9])
def test_stationary_moments_match_lyapunov_solution(beta, eta_lam):
    lam, cov = 3.0, 0.37
    eta = eta_lam / lam
    a, b, c = VT.stationary_moments(
        torch.tensor(lam, dtype=F64), torch.tensor(cov, dtype=F64), eta, beta
    )
    ref = lyapunov_theta_sq(lam, cov, eta, beta)
    np.testing.assert_allclose([a.item(), b.item(), c.item()], ref, rtol=1e-12)


def test_eq11_and_eq14_are_the_beta_zero_case():
    lam = torch.tensor([0.5, 2.0, 9.0], dtype=F64)
    eta, kappa = 0.1, 0.03
    np.testing.assert_allclose(
        VT.theta_sq(lam, kappa * lam, eta).numpy(),
        (eta * kappa / (2 - eta * lam)).numpy(),
        rtol=1e-14,
    )
    df = 2 * lam  # f = Σλ², eq. 14: ⟨θ²⟩ = η ∂f/∂λ / (2 − ηλ) with C = λ ∂f/∂λ
    np.testing.assert_allclose(
        VT.theta_sq(lam, lam * df, eta).numpy(), (eta * df / (2 - eta * lam)).numpy(), rtol=1e-14
    )


def test_no_stationary_state_beyond_the_stability_edge():
    with pytest.raises(ValueError, match=r"0 < eta\*lam < 2\(1\+beta\)"):
        VT.stationary_moments(torch.tensor([1.0], dtype=F64), torch.tensor([1.0], dtype=F64), 2.5)


def test_stationary_state_draw_has_the_right_moments(gen):
    valley = const_valley([1.5, 4.0])
    theta_hat = V.replicas([0.0], 200_000)
    theta, v = VT.stationary_state(valley, V.HessianNoise(0.1), theta_hat, 0.2, 0.5, gen)
    lam = torch.tensor([1.5, 4.0], dtype=F64)
    a, b, c = VT.stationary_moments(lam, 0.1 * lam, 0.2, 0.5)
    np.testing.assert_allclose((theta**2).mean(0).numpy(), a.numpy(), rtol=0.015)
    np.testing.assert_allclose((theta * v).mean(0).numpy(), b.numpy(), rtol=0.03)
    np.testing.assert_allclose((v**2).mean(0).numpy(), c.numpy(), rtol=0.015)


def test_predicted_drift_leading_order_closed_form():
    toy = V.trace_toy()
    th = V.replicas([2.0, 1.0], 3)
    eta, kappa = 0.01, 0.05
    for beta in (0.0, 0.9):
        lead = VT.predicted_drift(toy, V.HessianNoise(kappa), th, eta, beta=beta, order="leading")
        expected = -(eta**2) * kappa * 52 / (4 * (1 - beta) ** 2)  # ‖∇̂T‖² = 4² + 6² = 52
        np.testing.assert_allclose(lead.numpy(), expected, rtol=1e-12)
        exact = VT.predicted_drift(toy, V.HessianNoise(kappa), th, eta, beta=beta)
        lam = torch.tensor([6.0, 8.0], dtype=F64)
        th2 = eta * kappa * lam * (1 + beta) / (lam * (1 - beta) * (2 * (1 + beta) - eta * lam))
        overlap = torch.tensor([4 * 2 + 6 * 2, 4 * 2 + 6 * 4], dtype=F64)  # ∇̂T·∇̂λ_j
        np.testing.assert_allclose(
            exact.numpy(), (-eta / (2 * (1 - beta)) * (th2 * overlap).sum()).item()
        )
