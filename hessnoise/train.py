"""Training loops: reaching a valley floor, and SGD in it with checkpoints.

* :func:`minimize` drives a model to the floor of its valley with full-batch L-BFGS in float64
  (a quasi-Newton method: far faster and tighter than gradient descent there).
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
