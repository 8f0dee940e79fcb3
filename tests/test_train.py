"""Optimizers, θ in and θ out: Gauss–Newton reaches an interpolating floor to rounding,
gradient descent and SGD match independent reference loops, and a killed SGD run resumes to
the same result bit for bit."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from hessnoise import checkpoints, data, models, train
from hessnoise.curvature.reference import autograd_hessian
from hessnoise.params import FlatNet

F64 = torch.float64


def tiny_problem(n: int = 12, hidden: int = 16, seed: int = 0):
    """Digits pooled to 4×4, 16 → 16 → 10 (P = 442 ≫ N(K − 1) = 108): the network can
    interpolate (its last hidden layer is wider than K − 1).  The network as f(θ, x)."""
    x, y = data.load("digits", n, size=4, seed=seed)
    net = FlatNet(models.mlp(x.shape[1], [hidden], 10, seed=seed))
    return net, nn.CrossEntropyLoss(label_smoothing=0.1), x, y


# --------------------------------------------------------------------------------------------
# Gauss–Newton
# --------------------------------------------------------------------------------------------
def test_output_hessians_of_cross_entropy_are_diag_p_minus_ppT():
    out = torch.randn(5, 4, dtype=F64)
    y = torch.randint(0, 4, (5,))
    a = train._output_hessians(nn.CrossEntropyLoss(label_smoothing=0.2), out, y)
    p = out.softmax(-1)
    # closed form: the Hessian of −Σ q log softmax(f) in f is diag(p) − ppᵀ, whatever q
    assert torch.allclose(a, torch.diag_embed(p) - p[:, :, None] * p[:, None, :], atol=1e-14)


def test_gauss_newton_reaches_the_interpolating_floor():
    net, loss, x, y = tiny_problem()
    theta0 = net.theta0()
    fit = train.gauss_newton(lambda th: net(th, x), loss, y, theta0, max_iter=60, grad_tol=1e-13)
    eps, k = 0.1, 10
    top, rest = 1 - eps + eps / k, eps / k
    entropy = -top * math.log(top) - (k - 1) * rest * math.log(rest)
    # float64 rounding of a loss ≈ 0.5 is ~1e-16; of its gradient ~1e-15 · ‖J‖
    assert fit.grad_norm < 1e-11
    assert abs(fit.loss - entropy) < 1e-13
    # θ in, θ out: the module is untouched, and the returned θ has the reported loss
    assert torch.equal(net.theta0(), theta0)
    assert abs(loss(net(fit.theta, x), y).item() - fit.loss) < 1e-15
    # at an interpolating floor the Hessian is the Gauss–Newton matrix, of rank N(K − 1)
    h = autograd_hessian(net.write(fit.theta), loss, x, y)
    lam = torch.linalg.eigvalsh(h)
    tol = h.shape[0] * torch.finfo(F64).eps * lam.abs().max()
    assert int((lam > tol).sum()) == x.shape[0] * (k - 1)
    assert lam.min() > -tol


def test_lbfgs_is_left_far_above_the_floor_that_gauss_newton_reaches():
    # why the chapter uses Gauss–Newton: the same budget of iterations leaves L-BFGS far off
    net, loss, x, y = tiny_problem()
    lb = train.minimize(lambda th: loss(net(th, x), y), net.theta0(), max_iter=60,
                        grad_tol=1e-13)  # fmt: skip
    gn = train.gauss_newton(lambda th: net(th, x), loss, y, net.theta0(), max_iter=60,
                            grad_tol=1e-13)  # fmt: skip
    assert lb.grad_norm > 1e3 * gn.grad_norm
    # L-BFGS's reported gradient norm is the norm at its returned θ
    g = torch.func.grad(lambda th: loss(net(th, x), y))(lb.theta)
    assert g.norm().item() == pytest.approx(lb.grad_norm, rel=1e-12)


def test_gradient_descent_matches_a_hand_written_loop_with_momentum():
    net, loss, x, y = tiny_problem()

    def f(th):
        return loss(net(th, x), y)

    fit = train.gradient_descent(f, net.theta0(), lr=0.2, steps=25, momentum=0.9)
    theta, v = net.theta0(), torch.zeros(net.dim, dtype=F64)
    for _ in range(25):
        th = theta.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(f(th), th)
        v = 0.9 * v + g
        theta = theta - 0.2 * v
    assert torch.allclose(fit.theta, theta, rtol=0, atol=1e-14) and fit.iterations == 25


def test_gradient_descent_stops_below_the_target_loss():
    net, loss, x, y = tiny_problem()

    def f(th):
        return loss(net(th, x), y)

    full = train.gradient_descent(f, net.theta0(), lr=0.5, steps=200)
    target = full.history[50]
    fit = train.gradient_descent(f, net.theta0(), lr=0.5, steps=200, until=target)
    # the first iterate whose loss is ≤ the target is the 51st: 50 steps were taken
    assert fit.iterations == 51 and fit.loss <= target and fit.history == full.history[:51]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"max_iter": 0}, "max_iter=0"), ({"grad_tol": 0.0}, "grad_tol=0.0"),
     ({"damping": -1.0}, "damping=-1.0")],
)  # fmt: skip
def test_gauss_newton_refuses_bad_arguments(kwargs, match):
    net, loss, x, y = tiny_problem()
    with pytest.raises(ValueError, match=match):
        train.gauss_newton(lambda th: net(th, x), loss, y, net.theta0(), **kwargs)


# --------------------------------------------------------------------------------------------
# SGD
# --------------------------------------------------------------------------------------------
def quadratic(theta: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((theta - target) ** 2).sum()


def draw_target(gen: torch.Generator) -> tuple[torch.Tensor]:
    return (torch.randn(3, generator=gen, dtype=F64),)


def test_sgd_matches_a_hand_written_loop():
    theta0 = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    res = train.sgd(quadratic, theta0, draw_target, lr=0.1, steps=25, seed=7)
    gen = torch.Generator().manual_seed(7)
    theta = theta0.clone()
    for _ in range(25):  # ∇ ½‖θ − a‖² = θ − a
        theta = theta - 0.1 * (theta - draw_target(gen)[0])
    assert torch.allclose(res.theta, theta, rtol=0, atol=1e-15)
    assert res.resumed_from == 0 and res.steps == 25


def test_sgd_momentum_matches_torch_optim_sgd():
    theta0 = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    res = train.sgd(quadratic, theta0, draw_target, lr=0.05, steps=40, seed=3, momentum=0.9)
    gen = torch.Generator().manual_seed(3)
    p = theta0.clone().requires_grad_(True)
    opt = torch.optim.SGD([p], lr=0.05, momentum=0.9)
    for _ in range(40):
        opt.zero_grad()
        quadratic(p, *draw_target(gen)).backward()
        opt.step()
    assert torch.allclose(res.theta, p.detach(), rtol=0, atol=1e-14)


def test_sgd_callback_records_every_k_steps():
    theta0 = torch.zeros(3, dtype=F64)
    res = train.sgd(
        quadratic, theta0, draw_target, lr=0.1, steps=20, seed=0, every=5,
        callback=lambda step, th: {"norm": th.norm().item()} if step > 5 else None,
    )  # fmt: skip
    assert [r["step"] for r in res.records] == [10, 15, 20]
    assert abs(res.records[-1]["norm"] - res.theta.norm().item()) < 1e-15


class Killed(RuntimeError):
    pass


def test_sgd_resumes_after_a_kill_bit_for_bit(tmp_path):
    theta0 = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    kw = {"lr": 0.05, "steps": 50, "seed": 11, "momentum": 0.5, "every": 2}

    def record(step, th):
        return {"x": th[0].item()}

    ref = train.sgd(quadratic, theta0, draw_target, callback=record, **kw)

    def dies(step, th):
        if step == 38:
            raise Killed
        return record(step, th)

    path = tmp_path / "run.pt"
    with pytest.raises(Killed):
        train.sgd(quadratic, theta0, draw_target, callback=dies, checkpoint=path,
                  checkpoint_every=10, fingerprint="a", **kw)  # fmt: skip
    assert checkpoints.load_checkpoint(path)["step"] == 30  # the last checkpoint before the kill
    res = train.sgd(quadratic, theta0, draw_target, callback=record, checkpoint=path,
                    checkpoint_every=10, fingerprint="a", **kw)  # fmt: skip
    assert res.resumed_from == 30
    assert torch.equal(res.theta, ref.theta)
    assert res.records == ref.records
    # a finished checkpoint is read back without stepping
    again = train.sgd(quadratic, theta0, draw_target, callback=dies, checkpoint=path,
                      checkpoint_every=10, fingerprint="a", **kw)  # fmt: skip
    assert again.resumed_from == 50 and torch.equal(again.theta, ref.theta)
    # another fingerprint (another configuration) starts afresh
    other = train.sgd(quadratic, theta0, draw_target, callback=record, checkpoint=path,
                      checkpoint_every=10, fingerprint="b", **kw)  # fmt: skip
    assert other.resumed_from == 0 and torch.equal(other.theta, ref.theta)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"lr": 0.0}, "lr=0.0"), ({"steps": 0}, "steps=0"), ({"momentum": 1.0}, "momentum=1.0"),
     ({"every": 0}, "every=0"), ({"seed": -1}, "seed=-1")],
)  # fmt: skip
def test_sgd_refuses_bad_arguments(kwargs, match):
    args = {"lr": 0.1, "steps": 3, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=match):
        train.sgd(quadratic, torch.zeros(3, dtype=F64), draw_target, **args)
