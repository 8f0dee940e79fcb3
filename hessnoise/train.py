"""Training loops: reaching a valley floor, and SGD in it with checkpoints.

* :func:`minimize` drives a model to the floor of its valley with full-batch L-BFGS in float64
  (a quasi-Newton method: far faster and tighter than gradient descent there).
* :func:`gauss_newton` is Levenberg–Marquardt on the Gauss–Newton matrix: where a network can
  interpolate its targets it reaches the floor to rounding, which L-BFGS does not.
* :func:`gradient_descent` is the paper's full-batch GD (Section 4.1: lr 0.1, 10k epochs).
* :func:`sgd` runs mini-batch SGD (with optional heavy-ball momentum) from a state, calls back
  at snapshots, and checkpoints atomically so that a killed run resumes where it stopped.

All of them work on flat parameter vectors through :func:`torch.func.functional_call`, so the
model object itself is only read (its parameters are updated once, at the end).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

import hessnoise._forward_ad  # noqa: F401  (loads forward-mode AD without torch's warning)
from hessnoise._validate import number, positive_int


def flat_params(model: nn.Module) -> Tensor:
    """All parameters as one detached vector ``(P,)``."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def load_flat(model: nn.Module, theta: Tensor) -> None:
    """Write a flat vector ``(P,)`` into the model's parameters."""
    with torch.no_grad():
        i = 0
        for p in model.parameters():
            p.copy_(theta[i : i + p.numel()].view_as(p))
            i += p.numel()


def loss_function(model: nn.Module, loss_fn: Any) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    """``(theta (P,), x, y) ↦ loss`` through ``functional_call`` (the model is not modified)."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    sizes = [s.numel() for s in shapes]

    def f(theta: Tensor, x: Tensor, y: Tensor) -> Tensor:
        parts = theta.split(sizes)
        params = {n: c.view(s) for n, c, s in zip(names, parts, shapes, strict=True)}
        return loss_fn(functional_call(model, params, (x,)), y)

    return f


@dataclass
class FitResult:
    """Where a minimizer stopped: the loss, the gradient norm and the iterations it took."""

    loss: float
    grad_norm: float
    iterations: int
    history: list[float] = field(default_factory=list)


def minimize(
    model: nn.Module,
    loss_fn: Any,
    x: Tensor,
    y: Tensor,
    *,
    max_iter: int = 2000,
    grad_tol: float = 1e-10,
    history_size: int = 50,
) -> FitResult:
    """Full-batch L-BFGS (strong Wolfe line search) until ‖∇L‖ ≤ ``grad_tol`` or ``max_iter``
    iterations; updates the model in place."""
    positive_int("max_iter", max_iter)
    number("grad_tol", grad_tol, lo=0, lo_open=True)
    f = loss_function(model, loss_fn)
    theta = flat_params(model).clone().requires_grad_(True)
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
        loss = f(theta, x, y)
        loss.backward()
        history.append(loss.item())
        return loss

    opt.step(closure)
    load_flat(model, theta.detach())
    loss = f(theta, x, y)
    (g,) = torch.autograd.grad(loss, theta)
    return FitResult(loss.item(), g.norm().item(), opt.state[opt._params[0]]["n_iter"], history)


def gradient_descent(
    model: nn.Module, loss_fn: Any, x: Tensor, y: Tensor, *, lr: float, epochs: int
) -> FitResult:
    """Full-batch gradient descent, ``epochs`` steps of size ``lr``; updates the model."""
    number("lr", lr, lo=0, lo_open=True)
    positive_int("epochs", epochs)
    f = loss_function(model, loss_fn)
    grad_f = torch.func.grad_and_value(f)
    theta = flat_params(model)
    history = []
    for _ in range(epochs):
        g, loss = grad_f(theta, x, y)
        theta = theta - lr * g
        history.append(loss.item())
    load_flat(model, theta)
    g, loss = grad_f(theta, x, y)
    return FitResult(loss.item(), g.norm().item(), epochs, history)


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """``torch.save`` through a temporary file and ``os.replace``: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path) -> dict[str, Any] | None:
    """The state saved by :func:`save_checkpoint`, or ``None`` when there is no file.

    Loaded with ``weights_only=True``: a checkpoint holds tensors, numbers, strings, lists and
    dicts, never pickled code.
    """
    path = Path(path)
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


# --------------------------------------------------------------------------------------------
# Second order: the floor of a valley
# --------------------------------------------------------------------------------------------
def _output_hessians(loss_fn: Any, out: Tensor, y: Tensor) -> Tensor:
    """Per-sample Hessians ``(N, K, K)`` of ``loss_fn`` with respect to the model's outputs."""

    def one(o: Tensor, t: Tensor) -> Tensor:
        return loss_fn(o.unsqueeze(0), t.unsqueeze(0))

    return torch.vmap(torch.func.hessian(one))(out, y)


def gauss_newton(
    model: nn.Module,
    loss_fn: Any,
    x: Tensor,
    y: Tensor,
    *,
    max_iter: int = 100,
    grad_tol: float = 1e-10,
    damping: float = 1e-2,
) -> FitResult:
    r"""Full-batch Levenberg–Marquardt on the generalized Gauss–Newton matrix; updates the model.

    With per-sample losses ``ℓ(f_k, y_k)`` averaged over the N samples,

    .. math::  G = \frac1N \sum_k J_k^\top\, \nabla^2_f \ell_k\, J_k ,\qquad
               \boldsymbol\theta \leftarrow \boldsymbol\theta - (G + \mu I)^{-1}\nabla L ,

    where ``J_k = ∂f_k/∂θ`` is ``(K, P)``.  A step is kept when it does not raise the loss
    (then μ ← μ/3), otherwise μ ← 4μ.  Where the model can interpolate, every residual
    vanishes at the floor, G is the exact Hessian there, and convergence is quadratic, which
    L-BFGS does not reach on the ill-conditioned floors of overparameterized networks.

    ``loss_fn(output, target)`` must return the batch mean and be convex in the outputs
    (cross-entropy, squared error).  Stops when ‖∇L‖ ≤ ``grad_tol``, after ``max_iter``
    iterations, or when μ exceeds 10⁸ (no step lowers the loss: rounding).  Memory:
    ``N·K·P`` numbers for the Jacobian and ``P²`` for G, in the model's dtype and device.
    """
    positive_int("max_iter", max_iter)
    number("grad_tol", grad_tol, lo=0, lo_open=True)
    number("damping", damping, lo=0, lo_open=True)
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    sizes = [s.numel() for s in shapes]

    def outputs(theta: Tensor) -> Tensor:
        params = {n: c.view(s) for n, c, s in zip(names, theta.split(sizes), shapes, strict=True)}
        return functional_call(model, params, (x,))

    def loss_of(theta: Tensor) -> Tensor:
        return loss_fn(outputs(theta), y)

    grad_and_loss = torch.func.grad_and_value(loss_of)
    jac = torch.func.jacrev(outputs, chunk_size=256)
    theta = flat_params(model)
    eye = torch.eye(theta.numel(), dtype=theta.dtype, device=theta.device)
    mu = damping
    iterations = 0
    g, loss = grad_and_loss(theta)
    history = [loss.item()]
    while iterations < max_iter and g.norm().item() > grad_tol:
        with torch.no_grad():
            out = outputs(theta)
            j = jac(theta).reshape(out.numel(), -1)  # (N·K, P)
            a = _output_hessians(loss_fn, out, y)  # (N, K, K)
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
    load_flat(model, theta)
    return FitResult(loss.item(), g.norm().item(), iterations, history)


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
    theta = theta0.detach().clone()
    velocity = torch.zeros_like(theta)
    records: list[dict[str, Any]] = []
    start = 0
    state = load_checkpoint(checkpoint) if checkpoint is not None else None
    if state is not None and state.get("fingerprint") == fingerprint:
        theta = state["theta"].to(theta0.device, theta0.dtype)
        velocity = state["velocity"].to(theta0.device, theta0.dtype)
        gen.set_state(state["generator"])
        records = list(state["records"])
        start = int(state["step"])
    resumed_from = start

    def save(step: int) -> None:
        if checkpoint is None:
            return
        save_checkpoint(
            checkpoint,
            {
                "fingerprint": fingerprint,
                "step": step,
                "theta": theta.cpu(),
                "velocity": velocity.cpu(),
                "generator": gen.get_state(),
                "records": records,
            },
        )

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
