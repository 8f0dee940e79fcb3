"""Optimizers, written as functions of one flat parameter vector: θ in, θ out.

* :func:`minimize` — full-batch L-BFGS (strong Wolfe line search) to a minimum.
* :func:`gradient_descent` — full-batch gradient descent with optional heavy-ball momentum
  (the paper's projection of a state onto a minimum, and its Section 4.1 descent).
* :func:`gauss_newton` — Levenberg–Marquardt on the generalized Gauss–Newton matrix: where a
  network can interpolate its targets it reaches the floor to rounding, which L-BFGS does not.
* :func:`sgd` — mini-batch SGD (with optional heavy-ball momentum) from a state, calling back
  at snapshots and checkpointing atomically so that a killed run resumes where it stopped.

Many SGD runs advanced together (stacked θ, one vmapped gradient per step) are in
:mod:`hessnoise.train_batched`, which shares :func:`sgd`'s checkpoint format.

Each takes the loss (or the network's outputs) as a function of θ ``(P,)`` — a
:class:`hessnoise.params.FlatNet` gives one for any module — and returns the new θ in its
result record; nothing is written into a model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

import hessnoise._forward_ad  # noqa: F401  (loads forward-mode AD without torch's warning)
from hessnoise._validate import number, positive_int
from hessnoise.checkpoints import load_matching, save_checkpoint

Loss = Callable[[Tensor], Tensor]


@dataclass
class FitResult:
    """Where an optimizer stopped: θ ``(P,)``, the loss, the gradient norm, the iterations it
    took and the loss after each of them."""

    theta: Tensor
    loss: float
    grad_norm: float
    iterations: int
    history: list[float] = field(default_factory=list)


def minimize(
    loss: Loss,
    theta0: Tensor,
    *,
    max_iter: int = 2000,
    grad_tol: float = 1e-10,
    history_size: int = 50,
) -> FitResult:
    """Full-batch L-BFGS (strong Wolfe line search) from ``theta0`` until ‖∇L‖ ≤ ``grad_tol``
    or ``max_iter`` iterations."""
    positive_int("max_iter", max_iter)
    number("grad_tol", grad_tol, lo=0, lo_open=True)
    theta = theta0.detach().clone().requires_grad_(True)
    opt = torch.optim.LBFGS(
        [theta],
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=grad_tol,
        tolerance_change=0.0,
        history_size=history_size,
        line_search_fn="strong_wolfe",
    )
    history: list[float] = []

    def closure() -> Tensor:
        opt.zero_grad()
        value = loss(theta)
        value.backward()
        history.append(value.item())
        return value

    opt.step(closure)
    g, value = torch.func.grad_and_value(loss)(theta.detach())
    n_iter = opt.state[theta]["n_iter"]
    return FitResult(theta.detach(), value.item(), g.norm().item(), n_iter, history)


def gradient_descent(
    loss: Loss,
    theta0: Tensor,
    *,
    lr: float,
    steps: int,
    momentum: float = 0.0,
    until: float | None = None,
) -> FitResult:
    """Full-batch gradient descent, heavy-ball momentum in PyTorch's convention
    (v ← μv + ∇L, θ ← θ − ηv), for ``steps`` steps or until the loss is ≤ ``until``."""
    number("lr", lr, lo=0, lo_open=True)
    positive_int("steps", steps)
    number("momentum", momentum, lo=0, hi=1, hi_open=True)
    grad_f = torch.func.grad_and_value(loss)
    theta, velocity = theta0.detach(), torch.zeros_like(theta0)
    history = []
    for _ in range(steps):
        g, value = grad_f(theta)
        history.append(value.item())
        if until is not None and history[-1] <= until:
            break
        velocity = momentum * velocity + g if momentum else g
        theta = theta - lr * velocity
    g, value = grad_f(theta)
    return FitResult(theta, value.item(), g.norm().item(), len(history), history)


# --------------------------------------------------------------------------------------------
# Second order: the floor of a valley
# --------------------------------------------------------------------------------------------
def _output_hessians(loss_fn: Any, out: Tensor, y: Tensor) -> Tensor:
    """Per-sample Hessians ``(N, K, K)`` of ``loss_fn`` with respect to the model's outputs."""

    def one(o: Tensor, t: Tensor) -> Tensor:
        return loss_fn(o.unsqueeze(0), t.unsqueeze(0))

    return torch.vmap(torch.func.hessian(one))(out, y)


def gauss_newton(
    outputs: Callable[[Tensor], Tensor],
    loss_fn: Any,
    targets: Tensor,
    theta0: Tensor,
    *,
    max_iter: int = 100,
    grad_tol: float = 1e-10,
    damping: float = 1e-2,
) -> FitResult:
    r"""Full-batch Levenberg–Marquardt on the generalized Gauss–Newton matrix.

    With ``outputs(θ)`` the network's outputs ``(N, K)`` and per-sample losses
    ``ℓ(f_k, y_k)`` averaged over the N samples,

    .. math::  G = \frac1N \sum_k J_k^\top\, \nabla^2_f \ell_k\, J_k ,\qquad
               \boldsymbol\theta \leftarrow \boldsymbol\theta - (G + \mu I)^{-1}\nabla L ,

    where ``J_k = ∂f_k/∂θ`` is ``(K, P)``.  A step is kept when it does not raise the loss
    (then μ ← μ/3), otherwise μ ← 4μ.  Where the model can interpolate, every residual
    vanishes at the floor, G is the exact Hessian there, and convergence is quadratic, which
    L-BFGS does not reach on the ill-conditioned floors of overparameterized networks.

    ``loss_fn(output, target)`` must return the batch mean and be convex in the outputs
    (cross-entropy, squared error).  Stops when ‖∇L‖ ≤ ``grad_tol``, after ``max_iter``
    iterations, or when μ exceeds 10⁸ (no step lowers the loss: rounding).  Memory:
    ``N·K·P`` numbers for the Jacobian and ``P²`` for G, in θ's dtype and device.
    """
    positive_int("max_iter", max_iter)
    number("grad_tol", grad_tol, lo=0, lo_open=True)
    number("damping", damping, lo=0, lo_open=True)

    def loss_of(theta: Tensor) -> Tensor:
        return loss_fn(outputs(theta), targets)

    grad_and_loss = torch.func.grad_and_value(loss_of)
    jac = torch.func.jacrev(outputs, chunk_size=256)
    theta = theta0.detach()
    eye = torch.eye(theta.numel(), dtype=theta.dtype, device=theta.device)
    mu = damping
    iterations = 0
    g, loss = grad_and_loss(theta)
    history = [loss.item()]
    while iterations < max_iter and g.norm().item() > grad_tol:
        with torch.no_grad():
            out = outputs(theta)
            j = jac(theta).reshape(out.numel(), -1)  # (N·K, P)
            a = _output_hessians(loss_fn, out, targets)  # (N, K, K)
            aj = (a @ j.reshape(*out.shape, -1)).reshape(out.numel(), -1)
            gn = j.T @ aj / out.shape[0]
        accepted = False
        while not accepted and mu <= 1e8:
            chol, info = torch.linalg.cholesky_ex(gn + mu * eye)
            if info.item() == 0:
                step = torch.cholesky_solve(-g.unsqueeze(1), chol).squeeze(1)
                g_new, loss_new = grad_and_loss(theta + step)
                # at the floor the loss is flat to rounding: then a smaller gradient decides
                lower = loss_new.item() < loss.item()
                level = loss_new.item() <= loss.item() and g_new.norm() < g.norm()
                accepted = bool(lower or level)
            if accepted:
                theta, g, loss = theta + step, g_new, loss_new
                mu = max(mu / 3, 1e-14)
            else:
                mu *= 4
        if not accepted:
            break
        iterations += 1
        history.append(loss.item())
    return FitResult(theta, loss.item(), g.norm().item(), iterations, history)


# --------------------------------------------------------------------------------------------
# SGD with snapshots and checkpoints
# --------------------------------------------------------------------------------------------
@dataclass
class SGDResult:
    """Where an SGD run ended.

    ``records`` holds what the callback returned, in step order, each with its ``step``;
    ``resumed_from`` is the step the run restarted from (0 for a fresh run, ``steps`` when a
    finished checkpoint was found).
    """

    theta: Tensor
    records: list[dict[str, Any]]
    steps: int
    resumed_from: int


def sgd(
    loss: Callable[..., Tensor],
    theta0: Tensor,
    draw: Callable[[torch.Generator], tuple[Tensor, ...]],
    *,
    lr: float,
    steps: int,
    seed: int,
    momentum: float = 0.0,
    callback: Callable[[int, Tensor], dict[str, Any] | None] | None = None,
    every: int = 1,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 1000,
    fingerprint: str = "",
) -> SGDResult:
    r"""Mini-batch SGD with heavy-ball momentum from ``theta0`` ``(P,)``:

    .. math::  v_{t+1} = \mu v_t + \nabla L^{B_t}(\theta_t),\qquad
               \theta_{t+1} = \theta_t - \eta\, v_{t+1}

    (PyTorch's convention; μ = 0 is plain SGD).  ``loss(theta, *batch)`` is the mini-batch
    loss and ``draw(generator)`` returns the next batch; every random number comes from one
    ``torch.Generator`` on ``theta0``'s device, seeded with ``seed``.

    Every ``every`` steps ``callback(step, theta)`` may return a dict, which is stored (with
    ``step``) in :attr:`SGDResult.records`.  With ``checkpoint`` a path, the state (θ, v, the
    generator, the records) is written atomically every ``checkpoint_every`` steps and at the
    end; a later call with the same path and ``fingerprint`` resumes from it and returns the
    same result as an uninterrupted run, bit for bit.  A checkpoint with another fingerprint
    (another configuration) is ignored and overwritten.
    """
    number("lr", lr, lo=0, lo_open=True)
    positive_int("steps", steps)
    number("seed", seed, lo=0, integer=True)
    number("momentum", momentum, lo=0, hi=1, hi_open=True)
    positive_int("every", every)
    positive_int("checkpoint_every", checkpoint_every)
    gen = torch.Generator(device=theta0.device).manual_seed(seed)
    theta, velocity, records, start = _resume(checkpoint, fingerprint, theta0, gen)
    resumed_from = start

    def save(step: int) -> None:
        _save(checkpoint, fingerprint, step=step, theta=theta, velocity=velocity,
              generator=gen.get_state(), records=records)  # fmt: skip

    def grad(theta: Tensor, *batch: Tensor) -> Tensor:
        # plain autograd: a third less overhead per step than torch.func.grad for small models
        th = theta.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(loss(th, *batch), th)
        return g

    for step in range(start + 1, steps + 1):
        g = grad(theta, *draw(gen))
        velocity = momentum * velocity + g if momentum else g
        theta = theta - lr * velocity
        if callback is not None and step % every == 0:
            rec = callback(step, theta)
            if rec is not None:
                records.append({"step": step, **rec})
        if step % checkpoint_every == 0 and step < steps:
            save(step)
    if start < steps:
        save(steps)
    return SGDResult(theta, records, steps, resumed_from)


def _resume(
    checkpoint: str | Path | None, fingerprint: str, theta0: Tensor, gen: torch.Generator
) -> tuple[Tensor, Tensor, list[dict[str, Any]], int]:
    """θ, velocity, records and step from a matching checkpoint (setting ``gen``'s state), or
    the fresh start."""
    state = load_matching(checkpoint, fingerprint)
    if state is None:
        return theta0.detach().clone(), torch.zeros_like(theta0), [], 0
    gen.set_state(state["generator"])
    return (
        state["theta"].to(theta0.device, theta0.dtype),
        state["velocity"].to(theta0.device, theta0.dtype),
        list(state["records"]),
        int(state["step"]),
    )


def _save(
    checkpoint: str | Path | None,
    fingerprint: str,
    *,
    step: int,
    theta: Tensor,
    velocity: Tensor,
    generator: Tensor,
    records: list[dict[str, Any]],
) -> None:
    """The state of a run after ``step`` (``generator``: its generator's state) at
    ``checkpoint``, atomically."""
    if checkpoint is None:
        return
    save_checkpoint(
        checkpoint,
        {
            "fingerprint": fingerprint,
            "step": step,
            "theta": theta.cpu(),
            "velocity": velocity.cpu(),
            "generator": generator,
            "records": records,
        },
    )
