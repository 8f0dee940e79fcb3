"""Toy valleys and noises against closed forms, an independent Lyapunov solve, and simulation."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from hessnoise import valley as V

F64 = torch.float64


def const_valley(lams):
    lam = torch.as_tensor(lams, dtype=F64)
    return V.Valley(lambda th: lam.expand(th.shape[0], -1) + 0 * th[:, :1], n=len(lams), m=1)


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
    a, b, c = V.stationary_moments(
        torch.tensor(lam, dtype=F64), torch.tensor(cov, dtype=F64), eta, beta
    )
    ref = lyapunov_theta_sq(lam, cov, eta, beta)
    np.testing.assert_allclose([a.item(), b.item(), c.item()], ref, rtol=1e-12)


def test_eq11_and_eq14_are_the_beta_zero_case():
    lam = torch.tensor([0.5, 2.0, 9.0], dtype=F64)
    eta, kappa = 0.1, 0.03
    np.testing.assert_allclose(
        V.theta_sq(lam, kappa * lam, eta).numpy(),
        (eta * kappa / (2 - eta * lam)).numpy(),
        rtol=1e-14,
    )
    df = 2 * lam  # f = Σλ², eq. 14: ⟨θ²⟩ = η ∂f/∂λ / (2 − ηλ) with C = λ ∂f/∂λ
    np.testing.assert_allclose(
        V.theta_sq(lam, lam * df, eta).numpy(), (eta * df / (2 - eta * lam)).numpy(), rtol=1e-14
    )


def test_no_stationary_state_beyond_the_stability_edge():
    with pytest.raises(ValueError, match=r"0 < eta\*lam < 2\(1\+beta\)"):
        V.stationary_moments(torch.tensor([1.0], dtype=F64), torch.tensor([1.0], dtype=F64), 2.5)


@pytest.mark.parametrize("beta", [0.0, 0.8])
def test_simulated_variance_matches_theory(beta, gen):
    valley = const_valley([2.0, 7.0])
    noise = V.HessianNoise(0.05)
    eta, reps, steps = 0.1, 4000, 400
    theta_hat = V.replicas([0.0], reps)
    state = V.SGDState(torch.zeros(reps, 2, dtype=F64), theta_hat)
    V.run(valley, noise, state, eta, 200, beta=beta, generator=gen)  # relax from θ = 0
    acc = 0.0
    for s in V.sgd(valley, noise, state, eta, steps, beta=beta, generator=gen):
        acc = acc + (s.theta**2).mean(0)
    measured = acc / steps
    lam = torch.tensor([2.0, 7.0], dtype=F64)
    theory = V.theta_sq(lam, 0.05 * lam, eta, beta)
    # ~4000 replicas × ~20 independent windows each: relative s.e. below 1 %; allow 4 %.
    np.testing.assert_allclose(measured.numpy(), theory.numpy(), rtol=0.04)


def test_stationary_state_draw_has_the_right_moments(gen):
    valley = const_valley([1.5, 4.0])
    theta_hat = V.replicas([0.0], 200_000)
    theta, v = V.stationary_state(valley, V.HessianNoise(0.1), theta_hat, 0.2, 0.5, gen)
    lam = torch.tensor([1.5, 4.0], dtype=F64)
    a, b, c = V.stationary_moments(lam, 0.1 * lam, 0.2, 0.5)
    np.testing.assert_allclose((theta**2).mean(0).numpy(), a.numpy(), rtol=0.015)
    np.testing.assert_allclose((theta * v).mean(0).numpy(), b.numpy(), rtol=0.03)
    np.testing.assert_allclose((v**2).mean(0).numpy(), c.numpy(), rtol=0.015)


def test_paper_toys_closed_forms():
    th = torch.tensor([[2.0, 1.0], [0.3, -0.1]], dtype=F64)
    toy = V.trace_toy()
    np.testing.assert_allclose(toy.eigenvalues(th).numpy(), [[6.0, 8.0], [0.4, 0.2]])
    np.testing.assert_allclose(toy.lam_jacobian(th[:1]).numpy(), [[[2.0, 2.0], [2.0, 4.0]]])
    np.testing.assert_allclose(toy.spectral_grad(V.trace_fn, th[:1]).numpy(), [[4.0, 6.0]])
    toy2 = V.logdet_toy()
    a, b = 0.2, -0.3
    lam = toy2.eigenvalues(torch.tensor([[a, b]], dtype=F64))[0]
    np.testing.assert_allclose(
        lam.numpy(), [2 * (4 - 2 * math.exp(-a - b)), 2 * math.exp(-((a - b) ** 2))], rtol=1e-14
    )
    np.testing.assert_allclose(
        toy2.logdet(torch.tensor([[a, b]], dtype=F64)).item(), math.log(lam[0] * lam[1])
    )


def test_kappa_of_sgd_and_its_validation():
    assert V.kappa_sgd(10, 1000) == pytest.approx(0.1 * 0.99)
    assert V.kappa_sgd(1000, 1000) == 0.0
    with pytest.raises(ValueError, match="batch_size=0"):
        V.kappa_sgd(0, 100)
    with pytest.raises(ValueError, match="batch_size=101"):
        V.kappa_sgd(101, 100)


def test_designed_noise_covariance_and_sign_condition():
    lam = torch.tensor([[0.5, 3.0]], dtype=F64)
    noise = V.DesignedNoise(lambda l: (l**2).sum(-1), kappa=0.2)
    np.testing.assert_allclose(noise.covariance(lam).numpy(), (0.2 * 2 * lam**2).numpy())
    iso_like = V.DesignedNoise(V.logdet_fn, kappa=0.3)  # Corollary 2.1: C = κ·1
    np.testing.assert_allclose(iso_like.covariance(lam).numpy(), [[0.3, 0.3]])
    with pytest.raises(ValueError, match="∂f/∂λ_i ≥ 0"):
        V.DesignedNoise(lambda l: -l.sum(-1)).covariance(lam)


def test_label_noise_gradient_statistics(gen):
    """Gradient noise of label noise: covariance σ²λ in θ, zero-mean kicks in θ̂."""
    toy = V.trace_toy()
    reps = 200_000
    theta = torch.tensor([[0.3, -0.2]], dtype=F64).repeat(reps, 1)
    theta_hat = V.replicas([2.0, 1.0], reps)
    sigma = 0.4
    state = V.SGDState(theta.clone(), theta_hat.clone())
    step = next(V.sgd(toy, V.LabelNoise(sigma), state, 0.01, 1, generator=gen))
    lam = toy.eigenvalues(theta_hat[:1])[0]
    xi = step.grad - lam * theta
    np.testing.assert_allclose(xi.var(0).numpy(), (sigma**2 * lam).numpy(), rtol=0.02)
    full_hat = toy.spectral_grad(lambda l: 0.5 * (l * theta[:1] ** 2).sum(-1), theta_hat[:1])[0]
    kick = step.grad_hat - full_hat
    assert kick.mean(0).abs().max() < 5 * kick.std(0).max() / reps**0.5
    # Var of −ε θ_i ∇̂√λ_i summed over i, with ∇̂√λ_i = ∇̂λ_i / (2√λ_i).
    jac = toy.lam_jacobian(theta_hat[:1])[0]
    per_i = theta[0, :, None] * jac / (2 * lam.sqrt()[:, None])
    np.testing.assert_allclose(
        kick.var(0).numpy(), (sigma**2 * (per_i**2).sum(0)).numpy(), rtol=0.02
    )


def test_gradient_descent_and_momentum_updates_by_hand(gen):
    toy = V.trace_toy()
    theta = torch.tensor([[0.1, -0.2]], dtype=F64)
    theta_hat = torch.tensor([[2.0, 1.0]], dtype=F64)
    state = V.SGDState(theta.clone(), theta_hat.clone())
    eta, beta = 0.05, 0.5
    V.run(toy, V.NoNoise(), state, eta, 2, beta=beta, generator=gen)
    # By hand: L = |a+b| x² + |a+2b| y² with a, b > 0.
    x, y, a, b = 0.1, -0.2, 2.0, 1.0
    vx = vy = va = vb = 0.0
    for _ in range(2):
        gx, gy = 2 * (a + b) * x, 2 * (a + 2 * b) * y
        ga, gb = x**2 + y**2, x**2 + 2 * y**2
        vx, vy, va, vb = (
            beta * vx - eta * gx,
            beta * vy - eta * gy,
            beta * va - eta * ga,
            beta * vb - eta * gb,
        )
        x, y, a, b = x + vx, y + vy, a + va, b + vb
    np.testing.assert_allclose(state.theta.numpy(), [[x, y]], rtol=1e-13)
    np.testing.assert_allclose(state.theta_hat.numpy(), [[a, b]], rtol=1e-13)


def test_predicted_drift_leading_order_closed_form():
    toy = V.trace_toy()
    th = V.replicas([2.0, 1.0], 3)
    eta, kappa = 0.01, 0.05
    for beta in (0.0, 0.9):
        lead = V.predicted_drift(toy, V.HessianNoise(kappa), th, eta, beta=beta, order="leading")
        expected = -(eta**2) * kappa * 52 / (4 * (1 - beta) ** 2)  # ‖∇̂T‖² = 4² + 6² = 52
        np.testing.assert_allclose(lead.numpy(), expected, rtol=1e-12)
        exact = V.predicted_drift(toy, V.HessianNoise(kappa), th, eta, beta=beta)
        lam = torch.tensor([6.0, 8.0], dtype=F64)
        th2 = eta * kappa * lam * (1 + beta) / (lam * (1 - beta) * (2 * (1 + beta) - eta * lam))
        overlap = torch.tensor([4 * 2 + 6 * 2, 4 * 2 + 6 * 4], dtype=F64)  # ∇̂T·∇̂λ_j
        np.testing.assert_allclose(
            exact.numpy(), (-eta / (2 * (1 - beta)) * (th2 * overlap).sum()).item()
        )


def test_bad_arguments():
    toy = V.trace_toy()
    with pytest.raises(ValueError, match="n=0"):
        V.Valley(lambda th: th, n=0, m=1)
    with pytest.raises(ValueError, match=r"returned shape \(1, 2\); expected \(R, n\) = \(1, 3\)"):
        V.Valley(lambda th: th, n=3, m=2).trace(torch.zeros(1, 2, dtype=F64))
    state = V.SGDState(torch.zeros(2, 2, dtype=F64), V.replicas([2.0, 1.0], 2))
    g = torch.Generator()
    with pytest.raises(ValueError, match="eta=0.0"):
        next(V.sgd(toy, V.NoNoise(), state, 0.0, 1, generator=g))
    with pytest.raises(ValueError, match="beta=1.0"):
        next(V.sgd(toy, V.NoNoise(), state, 0.1, 1, beta=1.0, generator=g))
    with pytest.raises(ValueError, match="kappa=-1"):
        V.HessianNoise(-1)
    with pytest.raises(ValueError, match="dist='uniform'"):
        V.LabelNoise(0.1, dist="uniform")
    with pytest.raises(ValueError, match="theta has 2 replicas but theta_hat has 3"):
        V.SGDState(torch.zeros(2, 2, dtype=F64), torch.zeros(3, 2, dtype=F64))
