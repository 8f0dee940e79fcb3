r"""Projection onto minima: the gradient-flow limit map Φ of a valley floor, and the curvature
gradients that its slow flow follows.

Wei & Schwab project every SGD state onto "the closest minimum" (their eq. 16; in practice, by
gradient descent run until the loss is small).  The projection that makes the slow motion
along a floor Γ well defined is the *gradient-flow limit map*
of Li, Wang & Arora (2022): Φ(θ) is the point of Γ that gradient flow θ̇ = −∇L(θ) started at θ
converges to.  Because Φ is constant along gradient flow, ∂Φ(θ)∇L(θ) = 0, and SGD moves Φ(θ)
only through its noise (Itô's term); this is what turns Theorem 1 into a flow on Γ.

At a point θ* of Γ, with P_Γ the projector onto the tangent space T_θ*Γ = ker H(θ*),

.. math::  Φ(θ^* + d) = θ^* + P_Γ d + \tfrac12 ∂^2Φ[d, d] + O(|d|^3),\qquad
           ∂^2Φ[Σ] = -P_Γ\, ∇_θ \operatorname{tr}\!\big(\mathcal L_H^{-1}(Σ)\, H(θ)\big)

for Σ in the normal block, where 𝓛_H(M) = HM + MH is the Lyapunov operator (Li, Wang & Arora,
Lemma C.4).  In the eigenbasis of H, 𝓛_H⁻¹(ddᵀ) has entries c_i c_j/(λ_i + λ_j) with
c = Vᵀd.  The gradient of tr(M H(θ)) for a fixed M = Σ_a w_a w_aᵀ is a contraction of the
third derivative of L, computed here exactly by automatic differentiation
(:func:`trace_gradient`: forward-over-forward for w_aᵀ∇²L(θ)w_a, reverse for its gradient,
vmapped over the probes w_a).

A floor without a spectral gap (eigenvalues of H down to 10⁻⁷ on the book's network) puts
gradient flow to convergence out of reach: a normal displacement along λ relaxes as e^{−λt}.
:func:`limit_map` therefore splits the flow: it integrates gradient flow accurately
(:func:`gradient_flow`, classical Runge–Kutta) for a time t₁ that relaxes the stiff
directions, which carry most of the displacement, then lands on the floor with any projection
(Gauss–Newton for a network), adds the second-order term above for what is left, and lands
again (the second-order point is off the floor by O(|d|³)).  Since Φ(θ) = Φ(GF_t(θ)) for every
t, the result must not depend on t₁ once the remainder is small: that is the test of the map
(:class:`LimitPoint` records the pieces).  The tests check the map against gradient flow run to
convergence where a floor is gapped, and the second-order term against a closed form.

Shapes: θ is ``(P,)``; probes ``(k, P)``; eigenvalues ``(n,)``; eigenvectors ``(P, n)``.
Everything is float64 on θ's device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.func import grad, jvp, vmap

import hessnoise._forward_ad  # noqa: F401  (loads forward-mode AD without torch's warning)
from hessnoise._validate import number, positive_int

Loss = Callable[[Tensor], Tensor]
FrameAt = Callable[[Tensor], "FloorFrame"]
Projection = Callable[[Tensor], Tensor]


# --------------------------------------------------------------------------------------------
# Third derivatives: gradients of quadratic forms of the Hessian
# --------------------------------------------------------------------------------------------
def _quadratic_form(loss: Loss) -> Callable[[Tensor, Tensor], Tensor]:
    """(θ, w) ↦ wᵀ∇²L(θ)w, the second derivative of L along w (forward over forward)."""

    def along(theta: Tensor, w: Tensor) -> Tensor:
        def slope(t: Tensor) -> Tensor:
            return jvp(loss, (t,), (w,))[1]

        return jvp(slope, (theta,), (w,))[1]

    return along


def _check_probes(theta: Tensor, probes: Tensor) -> None:
    if probes.ndim != 2 or probes.shape[1] != theta.numel():
        raise ValueError(
            f"probes must be (k, P) with P = {theta.numel()}; got {tuple(probes.shape)}"
        )


def quadratic_form_gradients(
    loss: Loss, theta: Tensor, probes: Tensor, *, chunk: int = 512
) -> Tensor:
    r"""∇_θ (w_aᵀ ∇²L(θ) w_a) for each probe w_a, ``(k, P)``.

    With unit eigenvectors v_a of a simple eigenvalue λ_a of ∇²L(θ) as probes, row a is ∇λ_a
    (Hellmann–Feynman: the derivative of the eigenvector does not enter).  ``probes`` is
    ``(k, P)``; evaluated in chunks of ``chunk`` probes.
    """
    _check_probes(theta, probes)
    positive_int("chunk", chunk)
    one = grad(_quadratic_form(loss))
    rows = [vmap(one, in_dims=(None, 0))(theta, probes[i : i + chunk])
            for i in range(0, probes.shape[0], chunk)]  # fmt: skip
    return torch.cat(rows)


def trace_gradient(loss: Loss, theta: Tensor, probes: Tensor | None = None, *,
                   chunk: int = 512) -> Tensor:  # fmt: skip
    r"""∇_θ tr(W ∇²L(θ)) for the fixed matrix W = Σ_a w_a w_aᵀ, ``(P,)``.

    ``probes`` ``(k, P)`` holds the w_a; ``None`` means W = I (k = P unit vectors), so the
    result is ∇ tr H, exactly: Σ_j ∇(e_jᵀ H e_j), a contraction of the third derivative of L.
    Cost: k forward-over-forward-over-reverse passes, vmapped in chunks of ``chunk``.
    """
    if probes is None:
        probes = torch.eye(theta.numel(), dtype=theta.dtype, device=theta.device)
    _check_probes(theta, probes)
    positive_int("chunk", chunk)
    form = _quadratic_form(loss)

    def total(t: Tensor, w: Tensor) -> Tensor:
        return vmap(form, in_dims=(None, 0))(t, w).sum()

    out = torch.zeros_like(theta)
    for i in range(0, probes.shape[0], chunk):
        out = out + grad(total)(theta, probes[i : i + chunk])
    return out


# --------------------------------------------------------------------------------------------
# The floor's frame: normal and tangent spaces
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FloorFrame:
    """The split of parameter space at a floor point θ* ``(P,)``: the n non-degenerate
    eigenvalues ``lam`` ``(n,)`` (ascending) of H(θ*) with their eigenvectors ``normal``
    ``(P, n)``, which span the normal space; the tangent space T_θ*Γ is their orthogonal
    complement, ker H(θ*).  ``cut`` is the eigenvalue below which a direction counts as
    tangent."""

    theta: Tensor
    lam: Tensor
    normal: Tensor
    cut: float

    @property
    def rank(self) -> int:
        return self.lam.numel()

    def tangent(self, v: Tensor) -> Tensor:
        """P_Γ v = v − V Vᵀ v: the tangential part of ``v`` ``(P,)`` or ``(k, P)``."""
        return v - (v @ self.normal) @ self.normal.T

    def coords(self, v: Tensor) -> Tensor:
        """Vᵀ v: the normal coordinates of ``v``, ``(n,)`` or ``(k, n)``."""
        return v @ self.normal


def floor_frame(theta: Tensor, hessian: Tensor, *, cut: float | None = None,
                rank: int | None = None) -> FloorFrame:  # fmt: skip
    """The :class:`FloorFrame` at θ from its dense symmetric Hessian ``(P, P)``.

    The normal space is spanned by the eigenvectors of eigenvalues above ``cut`` (default: the
    numerical zero P·ε·max|λ|), or by the top ``rank`` ones when ``rank`` is given (for a
    floor whose rank is known, e.g. N(K − 1) at an interpolating one).
    """
    if hessian.shape != (theta.numel(), theta.numel()):
        raise ValueError(
            f"hessian must be (P, P) with P = {theta.numel()}; got {tuple(hessian.shape)}"
        )
    lam, vec = torch.linalg.eigh(hessian)
    if rank is not None:
        number("rank", rank, lo=1, hi=theta.numel(), integer=True)
        cut = float(lam[-rank - 1]) if rank < lam.numel() else float("-inf")
    elif cut is None:
        cut = theta.numel() * torch.finfo(lam.dtype).eps * lam.abs().max().item()
    keep = lam > cut
    return FloorFrame(theta, lam[keep], vec[:, keep], float(cut))


# --------------------------------------------------------------------------------------------
# The limit map to second order
# --------------------------------------------------------------------------------------------
def lyapunov_inverse(lam: Tensor, c: Tensor) -> Tensor:
    r"""𝓛_Λ⁻¹(c cᵀ) for Λ = diag(λ): the ``(n, n)`` matrix c_i c_j/(λ_i + λ_j), the solution M of
    ΛM + MΛ = c cᵀ (equivalently ∫₀^∞ e^{−Λt} c cᵀ e^{−Λt} dt, the time integral of the
    outer product of a relaxing displacement)."""
    if lam.shape != c.shape or lam.ndim != 1:
        raise ValueError(
            f"lam and c must be (n,) alike; got {tuple(lam.shape)} and {tuple(c.shape)}"
        )
    if (lam <= 0).any():
        raise ValueError(f"lam must be positive; smallest is {lam.min().item():.3g}")
    return torch.outer(c, c) / (lam[:, None] + lam[None, :])


def second_order_shift(loss: Loss, frame: FloorFrame, d: Tensor, *, rtol: float = 1e-14) -> Tensor:
    r"""½∂²Φ(θ*)[d, d] ``(P,)``: the second-order move of the limit map along the floor for a
    displacement ``d`` from the floor point ``frame.theta``,

    .. math::  -\tfrac12 P_Γ ∇_θ \operatorname{tr}\big(\mathcal L_H^{-1}(d_N d_N^\top)
               H(θ)\big)\Big|_{θ^*},

    with d_N the normal part of d.  The ``(n, n)`` matrix 𝓛_H⁻¹(d_N d_Nᵀ) is positive
    semidefinite and of low numerical rank; its eigenvectors above ``rtol`` times the largest
    eigenvalue are the probes of :func:`trace_gradient`.

    Example: on L = ½e^y x², whose limit map is Φ(x, y) = (0, y − x²/4),

    >>> import torch
    >>> def loss(t):
    ...     return 0.5 * torch.exp(t[1]) * t[0] ** 2
    >>> p = torch.tensor([0.0, 0.2], dtype=torch.float64)
    >>> frame = floor_frame(p, torch.func.hessian(loss)(p), rank=1)
    >>> shift = second_order_shift(loss, frame, torch.tensor([0.5, 0.0], dtype=torch.float64))
    >>> round(shift[1].item(), 12)
    -0.0625
    """
    c = frame.coords(d)
    k = lyapunov_inverse(frame.lam, c)
    mu, q = torch.linalg.eigh(k)
    keep = mu > rtol * mu.max().clamp_min(0)
    if not keep.any():
        return torch.zeros_like(d)
    probes = ((frame.normal @ q[:, keep]) * mu[keep].sqrt()).T.contiguous()
    return -0.5 * frame.tangent(trace_gradient(loss, frame.theta, probes))


def gradient_flow(loss: Loss, theta: Tensor, time: float, *, step: float) -> Tensor:
    """θ(time) of gradient flow θ̇ = −∇L(θ) from ``theta``, by classical fourth-order
    Runge–Kutta with a fixed ``step`` (stable for step·λ_max < 2.78; accurate to O(step⁴))."""
    number("time", time, lo=0)
    number("step", step, lo=0, lo_open=True)
    n = round(time / step)

    def g(t: Tensor) -> Tensor:
        # plain autograd: less than half the overhead of torch.func.grad on small models
        t = t.detach().requires_grad_(True)
        return torch.autograd.grad(loss(t), t)[0]

    for _ in range(n):
        k1 = g(theta)
        k2 = g(theta - 0.5 * step * k1)
        k3 = g(theta - 0.5 * step * k2)
        k4 = g(theta - step * k3)
        theta = theta - step / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return theta


@dataclass
class LimitPoint:
    """Φ(θ) from :func:`limit_map`: ``theta`` ``(P,)`` on the floor, with the pieces of the
    computation: ``flowed`` = GF_{t₁}(θ) for ``flow_time`` t₁, ``base`` the floor point landed
    on from it, ``remainder`` = |flowed − base| (the displacement that the second-order term
    treats), ``shift`` = |½∂²Φ[d, d]|, and ``landing`` = the distance of the final landing
    (the normal offset of the second-order point from the floor, O(|d|³))."""

    theta: Tensor
    flowed: Tensor
    base: Tensor
    flow_time: float
    remainder: float
    shift: float
    landing: float


def limit_map(loss: Loss, theta: Tensor, frame_at: FrameAt, *, flow_time: float, step: float,
              project: Projection | None = None) -> LimitPoint:  # fmt: skip
    r"""The gradient-flow limit map Φ(θ), in three steps:

    1. gradient flow for ``flow_time`` t₁ (:func:`gradient_flow`, Runge–Kutta with ``step``),
       which relaxes exactly the normal directions with λt₁ ≫ 1, those that carry most of the
       displacement;
    2. ``frame_at(θ)``: the :class:`FloorFrame` at a floor point p reached from there along
       the normal space to first order (e.g. by Gauss–Newton); then

       .. math::  Φ(θ) = p + P_Γ d + \tfrac12 ∂^2Φ(p)[d, d] + O(|d|^3),\qquad
                  d = GF_{t_1}(θ) - p

       (:func:`second_order_shift`);
    3. ``project`` that point onto the floor (default: the floor point of ``frame_at``): its
       normal offset from the floor is O(|d|³), and landing moves it along the floor by only
       the square of that offset.

    Since Φ(GF_t(θ)) = Φ(θ) for every t, the result must not depend on t₁ once |d| is small:
    the test of the map.
    """
    number("flow_time", flow_time, lo=0)
    flowed = gradient_flow(loss, theta, flow_time, step=step) if flow_time > 0 else theta
    frame = frame_at(flowed)
    d = flowed - frame.theta
    shift = second_order_shift(loss, frame, d)
    second = frame.theta + frame.tangent(d) + shift
    final = project(second) if project is not None else frame_at(second).theta
    return LimitPoint(
        theta=final, flowed=flowed, base=frame.theta, flow_time=float(flow_time),
        remainder=d.norm().item(), shift=shift.norm().item(),
        landing=(final - second).norm().item(),
    )  # fmt: skip
