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


# --------------------------------------------------------------------------------------------
# SGD runs advanced together
# --------------------------------------------------------------------------------------------
def tanh_problem():
    """A small tanh network on the digits, f(θ, x), with per-sample and mean losses."""
    net, loss, x, y = tiny_problem(n=30)

    def draw_of(size: int):
        def draw(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
            idx = torch.randperm(x.shape[0], generator=gen)[:size]
            return x[idx], y[idx]

        return draw

    def mean_loss(th, xb, yb):
        return loss(net(th, xb), yb)

    def sample_loss(th, xb, yb):
        return nn.functional.cross_entropy(net(th, xb), yb, label_smoothing=0.1, reduction="none")

    return net, draw_of, mean_loss, sample_loss


def batched_runs(net, draw_of, tmp_path=None):
    """Five runs that differ in step size, batch size, length, seed and period."""
    theta0 = net.theta0()
    specs = [(0.1, 5, 40, 1, 3), (0.05, 12, 25, 2, 5), (0.2, 30, 60, 3, 4), (0.1, 5, 1, 4, 1),
             (0.3, 8, 33, 5, 11)]  # fmt: skip
    return [
        train.SGDRun(theta0 + 0.01 * k, draw_of(s), lr, steps, seed, every,
                     None if tmp_path is None else tmp_path / f"run{k}.pt", f"fp{k}")
        for k, (lr, s, steps, seed, every) in enumerate(specs)
    ]  # fmt: skip


def norm_record(ids, steps, thetas):
    return [{"norm": t.norm().item(), "first": t[0].item()} for t in thetas]


@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_sgd_batched_follows_each_run_of_sgd(momentum):
    net, draw_of, mean_loss, sample_loss = tanh_problem()
    runs = batched_runs(net, draw_of)
    got = train.sgd_batched(sample_loss, runs, momentum=momentum, callback=norm_record)
    for run, res in zip(runs, got, strict=True):
        ref = train.sgd(
            mean_loss, run.theta0, run.draw, lr=run.lr, steps=run.steps, seed=run.seed,
            momentum=momentum, every=run.every,
            callback=lambda step, th: norm_record([0], [step], th[None])[0],
        )  # fmt: skip
        # the same batches; sums over zero-padded batches add in another order: rounding only
        assert (res.theta - ref.theta).abs().max() < 1e-13
        assert [r["step"] for r in res.records] == [r["step"] for r in ref.records]
        for a, b in zip(res.records, ref.records, strict=True):
            assert a["norm"] == pytest.approx(b["norm"], rel=1e-13, abs=0)
        assert res.steps == run.steps and res.resumed_from == 0


def test_sgd_batched_resumes_run_by_run_and_shares_sgds_checkpoints(tmp_path):
    net, draw_of, mean_loss, sample_loss = tanh_problem()
    ref = train.sgd_batched(sample_loss, batched_runs(net, draw_of), callback=norm_record)
    runs = batched_runs(net, draw_of, tmp_path)

    def dies(ids, steps, thetas):
        if 52 in steps:  # run 2 at step 52; runs 0, 1, 3 and 4 have finished by then
            raise Killed
        return norm_record(ids, steps, thetas)

    with pytest.raises(Killed):
        train.sgd_batched(sample_loss, runs, callback=dies, checkpoint_every=20)
    assert checkpoints.load_checkpoint(tmp_path / "run2.pt")["step"] == 40
    assert checkpoints.load_checkpoint(tmp_path / "run0.pt")["step"] == 40  # finished
    res = train.sgd_batched(sample_loss, runs, callback=norm_record, checkpoint_every=20)
    assert [r.resumed_from for r in res] == [40, 25, 40, 1, 33]
    # Stated guarantee: a resumed run gives the uninterrupted run's records to rounding (the
    # other runs in its batch change, and with them the order of some sums); on this CPU
    # the results are in fact bit for bit the same.
    for a, b in zip(res, ref, strict=True):
        assert (a.theta - b.theta).abs().max() < 1e-13
        assert [r["step"] for r in a.records] == [r["step"] for r in b.records]
        for ra, rb in zip(a.records, b.records, strict=True):
            assert ra["norm"] == pytest.approx(rb["norm"], rel=1e-13, abs=0)
    # the checkpoints are sgd's: sgd reads a finished one back without stepping
    run = runs[2]
    again = train.sgd(mean_loss, run.theta0, run.draw, lr=run.lr, steps=run.steps,
                      seed=run.seed, every=run.every, checkpoint=run.checkpoint,
                      fingerprint=run.fingerprint)  # fmt: skip
    assert again.resumed_from == run.steps and torch.equal(again.theta, res[2].theta)


def test_sgd_batched_refuses_bad_runs():
    net, draw_of, _, sample_loss = tanh_problem()
    theta0 = net.theta0()
    with pytest.raises(ValueError, match="runs is empty"):
        train.sgd_batched(sample_loss, [])
    with pytest.raises(ValueError, match=r"runs\[1\].lr=0.0"):
        train.sgd_batched(sample_loss, [train.SGDRun(theta0, draw_of(3), 0.1, 2, 0),
                                        train.SGDRun(theta0, draw_of(3), 0.0, 2, 0)])  # fmt: skip
    short = train.SGDRun(theta0[:3], draw_of(3), 0.1, 2, 0)
    with pytest.raises(ValueError, match=r"runs\[1\].theta0 has shape \(3,\)"):
        train.sgd_batched(sample_loss, [train.SGDRun(theta0, draw_of(3), 0.1, 2, 0), short])

    def other(gen):
        x, y = draw_of(3)(gen)
        return x[:, :5], y

    with pytest.raises(ValueError, match=r"runs\[1\].draw returns tensors"):
        train.sgd_batched(sample_loss, [train.SGDRun(theta0, draw_of(3), 0.1, 2, 0),
                                        train.SGDRun(theta0, other, 0.1, 2, 0)])  # fmt: skip
