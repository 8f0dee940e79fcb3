r"""The floor of the Section 4.1 network from its logits, for the slow-flow chapter.

The floor Γ, where the network interpolates its smoothed targets, is {softmax f(x_k; θ) = q_k},
i.e. the M(K − 1) logit differences r(θ) vanish (:func:`logit_residual`).
:func:`gauss_newton_to_floor` lands on it by undamped (minimum-norm) Gauss–Newton on r, and at
a floor point the Hessian is exactly the Gauss–Newton matrix J_rᵀÃJ_r/M, whose
eigen-decomposition comes from a (M(K − 1))² matrix (:func:`floor_frame_at`); :func:`landing`
is that map as the ``land`` of :func:`hessnoise.projection.limit_map`.

The prediction at the floor is in :mod:`hessnoise.experiments.slow_flow`, the SGD runs in
:mod:`hessnoise.experiments.slow_flow_runs`, their fits in
:mod:`hessnoise.experiments.slow_flow_fits`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from hessnoise import projection
from hessnoise._validate import positive_int
from hessnoise.experiments.floor import Problem

# Newton on the logit differences stops when every residual is below this (nats): the
# loss is then within ~1e-26 of the floor, as close as float64 can say.
RESIDUAL_TOL = 1e-12


# --------------------------------------------------------------------------------------------
# The floor from the logits
# --------------------------------------------------------------------------------------------
def logit_residual(problem: Problem, theta: Tensor) -> Tensor:
    """r(θ) ``(M(K − 1),)``: the logit differences f_c − f_K minus those of log q, per sample
    and class c < K.  The floor Γ, where the network interpolates q, is r = 0."""
    f = problem.outputs(theta)
    logq = problem.q.log()
    return ((f[:, :-1] - f[:, -1:]) - (logq[:, :-1] - logq[:, -1:])).reshape(-1)


def _residual_jacobian(problem: Problem, theta: Tensor) -> Tensor:
    return torch.func.jacrev(lambda t: logit_residual(problem, t))(theta)


@dataclass
class FloorLanding:
    """Where :func:`gauss_newton_to_floor` landed: θ ``(P,)`` on the floor, the largest
    residual there, the iterations, and the residual Jacobian J_r ``(M(K − 1), P)`` at θ."""

    theta: Tensor
    residual: float
    iterations: int
    jacobian: Tensor


def gauss_newton_to_floor(problem: Problem, theta: Tensor, *, max_iter: int = 50) -> FloorLanding:
    r"""Undamped Gauss–Newton on the logit residual: θ ← θ − J_r⁺r (minimum-norm steps, in the
    row space of J_r, i.e. normal to the floor to first order), halving a step that does not
    lower ‖r‖, until max|r| ≤ :data:`RESIDUAL_TOL`.

    The minimum-norm step does not depend on how the residual is weighted, so this is also
    undamped Gauss–Newton on the cross-entropy's own Gauss–Newton matrix.  Raises
    ``RuntimeError`` if it does not reach the floor in ``max_iter`` iterations.
    """
    positive_int("max_iter", max_iter)
    r = logit_residual(problem, theta)
    for it in range(max_iter + 1):
        jac = _residual_jacobian(problem, theta)
        if r.abs().max().item() <= RESIDUAL_TOL:
            return FloorLanding(theta, r.abs().max().item(), it, jac)
        if it == max_iter:
            break
        chol = torch.linalg.cholesky(jac @ jac.T)
        step = -jac.T @ torch.cholesky_solve(r.unsqueeze(1), chol).squeeze(1)
        scale = 1.0
        while True:
            new = theta + scale * step
            r_new = logit_residual(problem, new)
            if r_new.norm() < r.norm() or scale < 1e-6:
                break
            scale /= 2
        theta, r = new, r_new
    raise RuntimeError(
        f"Gauss–Newton did not reach the floor in {max_iter} iterations "
        f"(max residual {r.abs().max().item():.3g})"
    )


def _target_factor(problem: Problem) -> Tensor:
    """Per sample, a Cholesky factor L_k ``(M, K−1, K−1)`` of Ã_k = diag(q') − q'q'ᵀ
    (q' = q_k without its last class): the Hessian of the cross-entropy in the logit
    differences at p = q."""
    qp = problem.q[:, :-1]
    a = torch.diag_embed(qp) - qp.unsqueeze(2) * qp.unsqueeze(1)
    return torch.linalg.cholesky(a)


def _gauss_newton_root(problem: Problem, jac: Tensor) -> Tensor:
    """B ``(M(K−1), P)`` with BᵀB = J_rᵀÃJ_r/M, the Hessian at a floor point."""
    m, k1 = problem.q.shape[0], problem.q.shape[1] - 1
    chol = _target_factor(problem)  # Ã = L Lᵀ
    b = chol.transpose(1, 2) @ jac.reshape(m, k1, -1)
    return b.reshape(m * k1, -1) / math.sqrt(m)


def floor_frame_at(problem: Problem, landing: FloorLanding) -> projection.FloorFrame:
    """The :class:`~hessnoise.projection.FloorFrame` at a floor point from its Gauss–Newton
    root B (H = BᵀB exactly where the network interpolates): the eigenvalues of BBᵀ
    ``(M(K−1))²`` and the normal vectors V = BᵀUΛ^{−1/2}.  All M(K − 1) directions are normal
    (an interpolating floor has rank N(K − 1))."""
    b = _gauss_newton_root(problem, landing.jacobian)
    lam, u = torch.linalg.eigh(b @ b.T)
    if lam.min() <= 0:
        raise RuntimeError(
            f"the Gauss–Newton matrix is singular on the floor (λ_min = {lam.min():.3g})"
        )
    normal = (b.T @ u) / lam.sqrt()
    return projection.FloorFrame(landing.theta, lam, normal, 0.0)


def floor_trace(problem: Problem, landing: FloorLanding) -> float:
    """tr H at a floor point, ‖B‖²_F (exact where the network interpolates)."""
    return _gauss_newton_root(problem, landing.jacobian).pow(2).sum().item()


def landing(problem: Problem):
    """θ ↦ the :class:`~hessnoise.projection.FloorFrame` at the floor point that undamped
    Gauss–Newton reaches from θ: the ``land`` of :func:`hessnoise.projection.limit_map`."""

    def land(theta: Tensor) -> projection.FloorFrame:
        return floor_frame_at(problem, gauss_newton_to_floor(problem, theta))

    return land
