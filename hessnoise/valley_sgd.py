r"""Heavy-ball SGD on R replicas of a toy minimal valley.

:func:`sgd` runs ``v ← βv − η∇L^B``, ``θ ← θ + v`` on θ and θ̂ alike (β = 0 is plain SGD),
with the stochastic loss ``L^B = L + V`` of a noise model, and yields every :class:`Step`;
:func:`run` only advances the :class:`SGDState`.  The valleys (:class:`~hessnoise.valley.Valley`)
and noises (:class:`~hessnoise.valley.Noise`) are in :mod:`hessnoise.valley`, which re-exports
these names; the exact stationary statistics that the runs are tested against are in
:mod:`hessnoise.valley_theory`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from hessnoise._validate import number, positive_int

if TYPE_CHECKING:  # the valley imports this module: types only, no import cycle
    from hessnoise.valley import Noise, Valley


def _eta_column(eta: Tensor | float, replicas: int, like: Tensor) -> Tensor:
    """``eta``, a number or one learning rate per replica ``(R,)``, checked and as a column
    ``(1, 1)`` or ``(R, 1)``; :mod:`hessnoise.valley_theory` takes ``eta`` as the runs do."""
    eta_t = torch.as_tensor(eta, dtype=like.dtype, device=like.device)
    if eta_t.numel() == 1:
        number("eta", float(eta_t), lo=0, lo_open=True)
        return eta_t.reshape(1, 1)
    if eta_t.shape != (replicas,):
        raise ValueError(
            f"eta must be a number or a tensor of shape (R,) = ({replicas},); "
            f"got {tuple(eta_t.shape)}"
        )
    if (eta_t <= 0).any():
        raise ValueError("eta must be > 0 for every replica")
    return eta_t.reshape(-1, 1)


# --------------------------------------------------------------------------------------------
# Dynamics
# --------------------------------------------------------------------------------------------
@dataclass
class Step:
    """One SGD step, with everything measured at the point *before* the update.

    ``grad``/``grad_hat`` are the stochastic gradients ∇L^B used by the update, ``(R, n)`` and
    ``(R, m)``; the full-batch gradient in θ is ``lam * theta``.
    """

    t: int
    theta: Tensor
    theta_hat: Tensor
    lam: Tensor
    grad: Tensor
    grad_hat: Tensor


@dataclass
class SGDState:
    """Positions and heavy-ball velocities of R replicas."""

    theta: Tensor
    theta_hat: Tensor
    v: Tensor = field(default=None)  # type: ignore[assignment]
    v_hat: Tensor = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.theta.ndim != 2 or self.theta_hat.ndim != 2:
            raise ValueError(
                f"theta and theta_hat must be (R, n) and (R, m); got {tuple(self.theta.shape)} "
                f"and {tuple(self.theta_hat.shape)}"
            )
        if self.theta.shape[0] != self.theta_hat.shape[0]:
            r, r_hat = self.theta.shape[0], self.theta_hat.shape[0]
            raise ValueError(f"theta has {r} replicas but theta_hat has {r_hat}")
        if self.v is None:
            self.v = torch.zeros_like(self.theta)
        if self.v_hat is None:
            self.v_hat = torch.zeros_like(self.theta_hat)


def sgd(
    valley: Valley,
    noise: Noise,
    state: SGDState,
    eta: Tensor | float,
    steps: int,
    *,
    beta: float = 0.0,
    generator: torch.Generator,
) -> Iterator[Step]:
    """Run ``steps`` steps of heavy-ball SGD in place on ``state`` and yield each :class:`Step`.

    ``v ← βv − η∇L^B``, ``θ ← θ + v``, on θ and θ̂ alike.  ``eta`` is a number or one
    learning rate per replica, ``(R,)``.
    """
    positive_int("steps", steps)
    number("beta", beta, lo=0, hi=1, hi_open=True)
    eta_col = _eta_column(eta, state.theta.shape[0], state.theta)
    for t in range(steps):
        # L^B = ½ Σ λ_i(θ̂) θ_i² + V(θ, λ): ∂/∂θ in closed form, ∂/∂θ̂ as one vector-Jacobian
        # product of λ(θ̂) with ∂L^B/∂λ (cheaper than differentiating the whole loss)
        lam, lam_vjp = torch.func.vjp(valley.eigenvalues, state.theta_hat)
        noise_theta, noise_lam = noise.gradients(state.theta, lam, generator)
        grad = lam * state.theta + noise_theta
        d_lam = 0.5 * state.theta**2
        (grad_hat,) = lam_vjp(d_lam if noise_lam is None else d_lam + noise_lam)
        yield Step(t, state.theta, state.theta_hat, lam, grad, grad_hat)
        state.v = beta * state.v - eta_col * grad
        state.v_hat = beta * state.v_hat - eta_col * grad_hat
        state.theta = state.theta + state.v
        state.theta_hat = state.theta_hat + state.v_hat


def run(
    valley: Valley,
    noise: Noise,
    state: SGDState,
    eta: Tensor | float,
    steps: int,
    *,
    beta: float = 0.0,
    generator: torch.Generator,
) -> SGDState:
    """Advance ``state`` by ``steps`` steps without recording anything."""
    for _ in sgd(valley, noise, state, eta, steps, beta=beta, generator=generator):
        pass
    return state
