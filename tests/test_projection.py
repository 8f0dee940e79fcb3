"""The gradient-flow limit map and its curvature gradients against independent references.

* the valley L = ½e^y x², whose limit map Φ(x, y) = (0, y − x²/4) is known in closed form
  (the second-order term is exact there);
* a diagonal linear network u∘v on two equations, whose floor is curved and gapped, so that
  scipy's integrator runs gradient flow to convergence: the second-order map's error must
  fall as |d|³, the hybrid map must match the flow, and Gauss–Newton must move twice as far
  along the floor to second order (along eigenvectors, and on average over signs);
* third-derivative contractions against central differences of dense Hessians
  (``torch.func.hessian``), eigenvalue gradients against differences of eigenvalues.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from hessnoise import projection as pj

F64 = torch.float64


# --------------------------------------------------------------------------------------------
# Toys
# --------------------------------------------------------------------------------------------
def exp_valley(theta):
    """L = ½ e^y x²: floor x = 0, λ = e^y, Φ(x, y) = (0, y − x²/4) exactly (dy/d(x²) = 1/4
    along the flow)."""
    return 0.5 * torch.exp(theta[1]) * theta[0] ** 2


def exp_frame(theta):
    p = torch.stack([torch.zeros((), dtype=F64), theta[1]])
    return pj.floor_frame(p, torch.func.hessian(exp_valley)(p), rank=1)


G = torch.Generator().manual_seed(7)
X = torch.randn(2, 3, generator=G, dtype=F64)
W_STAR = torch.tensor([1.0, -0.7, 0.5], dtype=F64)
Y = X @ W_STAR


def diag_net(theta):
    """A diagonal linear network f(x) = x·(u∘v) fitted to two equations: P = 6, the floor
    {X(u∘v) = y} has dimension 4 and is curved."""
    u, v = theta[:3], theta[3:]
    return 0.25 * ((X @ (u * v) - Y) ** 2).sum()


def residual(theta):
    return X @ (theta[:3] * theta[3:]) - Y


def gauss_newton(theta, iters=60):
    """Undamped minimum-norm Gauss–Newton on the residual: θ ← θ − J⁺r."""
    for _ in range(iters):
        r = residual(theta)
        if r.abs().max() < 1e-15:
            break
        j = torch.func.jacrev(residual)(theta)
        theta = theta - j.T @ torch.linalg.solve(j @ j.T, r)
    return theta


def diag_frame(theta):
    p = gauss_newton(theta)
    return pj.floor_frame(p, torch.func.hessian(diag_net)(p), rank=2)


def flow_limit(theta, t_end=1500.0):
    """Gradient flow of the diagonal network run to convergence by scipy (DOP853), with the
    gradient in closed form (∂L/∂u = ½Xᵀr∘v, ∂L/∂v = ½Xᵀr∘u): no code shared with the map."""
    x, y = X.numpy(), Y.numpy()

    def rhs(_t, z):
        u, v = z[:3], z[3:]
        g = 0.5 * x.T @ (x @ (u * v) - y)
        return -np.concatenate([g * v, g * u])

    sol = solve_ivp(rhs, (0, t_end), theta.numpy(), method="DOP853", rtol=1e-13, atol=1e-15)
    out = torch.from_numpy(sol.y[:, -1])
    assert torch.func.grad(diag_net)(out).norm() < 1e-12  # converged: the floor is gapped
    return out


@pytest.fixture(scope="module")
def floor_point():
    """A point of the diagonal network's floor and its frame (eigenvalues well apart)."""
    theta0 = torch.tensor([1.2, 0.4, 0.9, 0.8, -1.1, 0.6], dtype=F64)
    p = gauss_newton(theta0)
    frame = diag_frame(p)
    assert frame.lam.min() > 0.05 and frame.lam[1] / frame.lam[0] > 1.5
    return frame


# --------------------------------------------------------------------------------------------
# The limit map
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("x", [0.05, 0.3, 1.0])
def test_second_order_term_is_exact_on_the_exponential_valley(x):
    p = torch.tensor([0.0, 0.2], dtype=F64)
    frame = exp_frame(p)
    shift = pj.second_order_shift(exp_valley, frame, torch.tensor([x, 0.0], dtype=F64))
    # Φ(x, y) − (0, y) = (0, −x²/4): no higher-order terms on this valley
    torch.testing.assert_close(shift, torch.tensor([0.0, -(x**2) / 4], dtype=F64), rtol=1e-12,
                               atol=1e-14)  # fmt: skip


@pytest.mark.parametrize("flow_time", [0.0, 2.0, 20.0])
def test_limit_map_on_the_exponential_valley_at_any_flow_time(flow_time):
    theta = torch.tensor([0.8, -0.3], dtype=F64)
    lp = pj.limit_map(exp_valley, theta, exp_frame, flow_time=flow_time, step=0.05)
    # exact: (0, y − x²/4); with flow, up to the Runge–Kutta error (step⁴, tiny here)
    torch.testing.assert_close(lp.theta, torch.tensor([0.0, -0.3 - 0.16], dtype=F64), rtol=0,
                               atol=1e-7)  # fmt: skip
    assert lp.flow_time == flow_time


def test_second_order_map_error_falls_as_the_cube(floor_point):
    frame = floor_point
    direction = frame.normal @ torch.tensor([0.6, -0.8], dtype=F64)
    errors, shifts = [], []
    for eps in (0.04, 0.02, 0.01):
        d = eps * direction
        ref = flow_limit(frame.theta + d)
        shift = pj.second_order_shift(diag_net, frame, d)
        errors.append((ref - frame.theta - frame.tangent(d) - shift).norm().item())
        shifts.append(shift.norm().item())
    # the second-order term is really there (∝ ε²) and the error is third order (∝ ε³)
    assert shifts[0] / shifts[1] == pytest.approx(4, rel=0.02)
    assert errors[0] / errors[1] == pytest.approx(8, rel=0.15)
    assert errors[1] / errors[2] == pytest.approx(8, rel=0.15)
    assert errors[2] < 0.05 * shifts[2]


@pytest.mark.parametrize("flow_time", [0.0, 3.0, 30.0])
def test_hybrid_limit_map_matches_gradient_flow_to_convergence(floor_point, flow_time):
    theta = floor_point.theta + floor_point.normal @ torch.tensor([0.05, 0.03], dtype=F64)
    ref = flow_limit(theta)
    lp = pj.limit_map(diag_net, theta, diag_frame, flow_time=flow_time, step=0.05,
                      project=gauss_newton)  # fmt: skip
    # error O(|d|³) at the remainder, which the flow shrinks; on the floor after landing
    assert (lp.theta - ref).norm() < 5e-5 * (1 if flow_time == 0 else 0.1)
    assert residual(lp.theta).abs().max() < 1e-12
    assert lp.remainder <= 0.06 and lp.landing < 1e-3


@pytest.mark.parametrize("j", [0, 1])
def test_gauss_newton_moves_twice_as_far_along_an_eigenvector(floor_point, j):
    frame = floor_point
    ratios = []
    for eps in (0.02, 0.01, 0.005):
        d = eps * frame.normal[:, j]
        gn = frame.tangent(gauss_newton(frame.theta + d) - frame.theta)
        shift = pj.second_order_shift(diag_net, frame, d)
        ratios.append(((gn @ shift) / (shift @ shift)).item())
    # → 2 with an O(ε) correction: the deviation halves with ε
    assert abs(ratios[-1] - 2) < 0.02
    assert abs(ratios[-1] - 2) < 0.7 * abs(ratios[0] - 2) + 1e-4


def test_gauss_newton_is_twice_on_average_over_signs(floor_point):
    frame = floor_point
    a, b = 0.01, 0.008
    d_plus = frame.normal @ torch.tensor([a, b], dtype=F64)
    d_minus = frame.normal @ torch.tensor([a, -b], dtype=F64)
    moves = {}
    for name, d in (("+", d_plus), ("-", d_minus)):
        gn = frame.tangent(gauss_newton(frame.theta + d) - frame.theta)
        moves[name] = (gn, pj.second_order_shift(diag_net, frame, d))
    # a displacement with two eigen-components, averaged over the sign of one (a covariance
    # diagonal in the eigenbasis): twice, up to third order
    gn_avg = (moves["+"][0] + moves["-"][0]) / 2
    s_avg = (moves["+"][1] + moves["-"][1]) / 2
    assert (gn_avg - 2 * s_avg).norm() < 0.03 * s_avg.norm()


# --------------------------------------------------------------------------------------------
# Third derivatives
# --------------------------------------------------------------------------------------------
def tiny_mlp_loss():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(6, 3, generator=gen, dtype=F64)
    q = torch.softmax(torch.randn(6, 4, generator=gen, dtype=F64), -1)
    sizes = (3 * 5, 5, 5 * 4, 4)

    def loss(theta):
        w1, b1, w2, b2 = theta.split(sizes)
        h = torch.tanh(x @ w1.reshape(3, 5) + b1)
        return torch.nn.functional.cross_entropy(h @ w2.reshape(5, 4) + b2, q)

    theta = 0.7 * torch.randn(sum(sizes), generator=gen, dtype=F64)
    return loss, theta


@pytest.mark.parametrize("which", ["diag", "mlp"])
@pytest.mark.parametrize("weighted", [False, True])
def test_trace_gradient_against_central_differences(which, weighted):
    if which == "diag":
        loss, theta = diag_net, torch.tensor([0.9, 0.3, -0.5, 1.1, 0.2, 0.7], dtype=F64)
    else:
        loss, theta = tiny_mlp_loss()
    n = theta.numel()
    gen = torch.Generator().manual_seed(11)
    probes = torch.randn(3, n, generator=gen, dtype=F64) if weighted else None
    w = probes.T @ probes if weighted else torch.eye(n, dtype=F64)
    exact = pj.trace_gradient(loss, theta, probes, chunk=2)  # chunking must not matter
    h = 1e-4

    def tr(t):
        return torch.trace(w @ torch.func.hessian(loss)(t))

    for e in torch.randn(3, n, generator=gen, dtype=F64):
        e = e / e.norm()
        fd = (tr(theta + h * e) - tr(theta - h * e)) / (2 * h)
        # central differences: O(h²) ≈ 1e-7 relative, rounding ≈ 1e-16/h ≈ 1e-12
        assert (exact @ e).item() == pytest.approx(fd.item(), rel=1e-5, abs=1e-9)


def test_quadratic_form_gradients_are_eigenvalue_gradients():
    loss, theta = tiny_mlp_loss()
    _, vec = torch.linalg.eigh(torch.func.hessian(loss)(theta))
    idx = [-1, -2, -5]
    grads = pj.quadratic_form_gradients(loss, theta, vec[:, idx].T.contiguous(), chunk=2)
    h = 1e-5
    gen = torch.Generator().manual_seed(5)
    for e in torch.randn(2, theta.numel(), generator=gen, dtype=F64):
        plus = torch.linalg.eigvalsh(torch.func.hessian(loss)(theta + h * e))[idx]
        minus = torch.linalg.eigvalsh(torch.func.hessian(loss)(theta - h * e))[idx]
        torch.testing.assert_close(grads @ e, (plus - minus) / (2 * h), rtol=1e-5, atol=1e-8)
    # summed over all eigenvectors they are ∇tr H
    all_rows = pj.quadratic_form_gradients(loss, theta, vec.T.contiguous())
    torch.testing.assert_close(all_rows.sum(0), pj.trace_gradient(loss, theta), rtol=1e-10,
                               atol=1e-12)  # fmt: skip


# --------------------------------------------------------------------------------------------
# Pieces
# --------------------------------------------------------------------------------------------
def test_lyapunov_inverse_solves_the_lyapunov_equation(gen):
    lam = torch.rand(5, generator=gen, dtype=F64) + 1e-3
    c = torch.randn(5, generator=gen, dtype=F64)
    m = pj.lyapunov_inverse(lam, c)
    torch.testing.assert_close(lam[:, None] * m + m * lam[None, :], torch.outer(c, c))
    assert torch.linalg.eigvalsh(m).min() > -1e-12  # positive semidefinite: a time integral
    with pytest.raises(ValueError, match="lam must be positive"):
        pj.lyapunov_inverse(-lam, c)
    with pytest.raises(ValueError, match=r"\(n,\) alike"):
        pj.lyapunov_inverse(lam, c[:3])


def test_floor_frame_splits_normal_and_tangent(gen):
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=gen, dtype=F64))
    lam = torch.tensor([0, 0, 0, 1e-6, 0.5, 3.0], dtype=F64)
    h = q @ torch.diag(lam) @ q.T
    theta = torch.zeros(6, dtype=F64)
    frame = pj.floor_frame(theta, h)  # numerical zero cut: three normal directions
    assert frame.rank == 3
    torch.testing.assert_close(frame.lam, lam[3:], rtol=1e-8, atol=1e-14)
    v = torch.randn(6, generator=gen, dtype=F64)
    t = frame.tangent(v)
    torch.testing.assert_close(frame.coords(t), torch.zeros(3, dtype=F64), atol=1e-14, rtol=0)
    torch.testing.assert_close(frame.tangent(t), t)
    assert pj.floor_frame(theta, h, rank=2).rank == 2  # the soft direction counted as tangent
    with pytest.raises(ValueError, match="hessian must be"):
        pj.floor_frame(theta, h[:5, :5])
    with pytest.raises(ValueError, match="rank=7"):
        pj.floor_frame(theta, h, rank=7)


def test_gradient_flow_is_fourth_order_on_a_quadratic(gen):
    a = torch.diag(torch.tensor([4.0, 1.0, 0.1], dtype=F64))
    theta0 = torch.randn(3, generator=gen, dtype=F64)

    def loss(t):
        return 0.5 * t @ a @ t

    exact = torch.exp(-torch.diagonal(a) * 2.0) * theta0
    e1 = (pj.gradient_flow(loss, theta0, 2.0, step=0.1) - exact).norm().item()
    e2 = (pj.gradient_flow(loss, theta0, 2.0, step=0.05) - exact).norm().item()
    assert e1 < 1e-5 and e1 / e2 == pytest.approx(16, rel=0.1)


def test_bad_arguments_are_refused_naming_them():
    theta = torch.zeros(3, dtype=F64)
    with pytest.raises(ValueError, match=r"probes must be \(k, P\) with P = 3"):
        pj.trace_gradient(exp_valley, theta, torch.zeros(2, 4, dtype=F64))
    with pytest.raises(ValueError, match="chunk=0"):
        pj.quadratic_form_gradients(exp_valley, theta, torch.zeros(2, 3, dtype=F64), chunk=0)
    with pytest.raises(ValueError, match="step=0"):
        pj.gradient_flow(exp_valley, theta, 1.0, step=0)
    with pytest.raises(ValueError, match="flow_time=-1"):
        pj.limit_map(exp_valley, theta, exp_frame, flow_time=-1, step=0.1)


def test_second_order_shift_of_no_displacement_is_zero():
    frame = exp_frame(torch.tensor([0.0, 0.0], dtype=F64))
    assert pj.second_order_shift(exp_valley, frame, torch.zeros(2, dtype=F64)).abs().max() == 0
    assert math.isfinite(np.float64(frame.cut))
