"""Heavy-ball SGD on toy valleys: updates by hand, label noise's gradient statistics, and the
simulated stationary variance against theory."""

import numpy as np
import pytest
import torch
from test_valley import const_valley

from hessnoise import valley as V
from hessnoise import valley_sgd as VS
from hessnoise import valley_theory as VT

F64 = torch.float64


@pytest.mark.parametrize("beta", [0.0, 0.8])
def test_simulated_variance_matches_theory(beta, gen):
    valley = const_valley([2.0, 7.0])
    noise = V.HessianNoise(0.05)
    eta, reps, steps = 0.1, 4000, 400
    theta_hat = V.replicas([0.0], reps)
    state = VS.SGDState(torch.zeros(reps, 2, dtype=F64), theta_hat)
    VS.run(valley, noise, state, eta, 200, beta=beta, generator=gen)  # relax from θ = 0
    acc = 0.0
    for s in VS.sgd(valley, noise, state, eta, steps, beta=beta, generator=gen):
        acc = acc + (s.theta**2).mean(0)
    measured = acc / steps
    lam = torch.tensor([2.0, 7.0], dtype=F64)
    theory = VT.theta_sq(lam, 0.05 * lam, eta, beta)
    # ~4000 replicas × ~20 independent windows each: relative s.e. below 1 %; allow 4 %.
    np.testing.assert_allclose(measured.numpy(), theory.numpy(), rtol=0.04)


def test_label_noise_gradient_statistics(gen):
    """Gradient noise of label noise: covariance σ²λ in θ, zero-mean kicks in θ̂."""
    toy = V.trace_toy()
    reps = 200_000
    theta = torch.tensor([[0.3, -0.2]], dtype=F64).repeat(reps, 1)
    theta_hat = V.replicas([2.0, 1.0], reps)
    sigma = 0.4
    state = VS.SGDState(theta.clone(), theta_hat.clone())
    step = next(VS.sgd(toy, V.LabelNoise(sigma), state, 0.01, 1, generator=gen))
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
    state = VS.SGDState(theta.clone(), theta_hat.clone())
    eta, beta = 0.05, 0.5
    VS.run(toy, V.NoNoise(), state, eta, 2, beta=beta, generator=gen)
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


def test_bad_arguments():
    toy = V.trace_toy()
    state = VS.SGDState(torch.zeros(2, 2, dtype=F64), V.replicas([2.0, 1.0], 2))
    g = torch.Generator()
    with pytest.raises(ValueError, match="eta=0.0"):
        next(VS.sgd(toy, V.NoNoise(), state, 0.0, 1, generator=g))
    with pytest.raises(ValueError, match="beta=1.0"):
        next(VS.sgd(toy, V.NoNoise(), state, 0.1, 1, beta=1.0, generator=g))
    with pytest.raises(ValueError, match="theta has 2 replicas but theta_hat has 3"):
        VS.SGDState(torch.zeros(2, 2, dtype=F64), torch.zeros(3, 2, dtype=F64))
