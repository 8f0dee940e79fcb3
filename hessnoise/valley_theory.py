r"""Exact stationary statistics of SGD on a toy minimal valley, and the drift they predict.

* :func:`trace_fn`, :func:`logdet_fn`, :func:`frobenius_sq_fn` — spectral functions f(λ) of the
  theorems (Theorem 1, Corollary 2.1, and an f of the user's choice for Theorem 2);
* :func:`stationary_moments`, :func:`theta_sq` — the exact stationary second moments of
  heavy-ball SGD on ``½λθ²`` (eq. 11, eq. 14, and their heavy-ball generalization);
  :func:`stationary_state` draws (θ, v) from that state;
* :func:`drift_rates`, :func:`predicted_drift` — the mean change of f(λ) per step they imply.

The chapters test the simulations of :mod:`hessnoise.valley_sgd` against these.  The valleys
and noises are in :mod:`hessnoise.valley`, which re-exports these names.  Shapes as there:
``(R, n)`` and ``(R, m)`` float64, one row per replica.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

import hessnoise._forward_ad  # noqa: F401  (loads forward-mode AD without torch's warning)
from hessnoise._validate import choice, number
from hessnoise.valley_sgd import _eta_column

if TYPE_CHECKING:  # the valley imports this module: types only, no import cycle
    from hessnoise.valley import Noise, SpectralFn, Valley


def trace_fn(lam: Tensor) -> Tensor:
    """f(λ) = Σ λ_i (Theorem 1)."""
    return lam.sum(-1)


def logdet_fn(lam: Tensor) -> Tensor:
    """f(λ) = Σ log λ_i (Corollary 2.1)."""
    return lam.log().sum(-1)


def frobenius_sq_fn(lam: Tensor) -> Tensor:
    """f(λ) = Σ λ_i², the squared Frobenius norm of the non-degenerate block (an example of
    a spectral function of the user's choice for Theorem 2)."""
    return (lam**2).sum(-1)


# --------------------------------------------------------------------------------------------
# Stationary statistics
# --------------------------------------------------------------------------------------------
def _check_stable(lam: Tensor, eta: Tensor | float, beta: float) -> None:
    eta_lam = torch.as_tensor(eta, dtype=lam.dtype) * lam
    if ((eta_lam <= 0) | (eta_lam >= 2 * (1 + beta))).any():
        raise ValueError(
            f"no stationary state: need 0 < eta*lam < 2(1+beta) = {2 * (1 + beta):g}, "
            f"got eta*lam in [{eta_lam.min().item():.4g}, {eta_lam.max().item():.4g}]"
        )


def stationary_moments(
    lam: Tensor, cov: Tensor, eta: Tensor | float, beta: float = 0.0
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Exact stationary second moments of heavy-ball SGD on ``½λθ²`` with noise variance C.

    For ``v ← βv − η(λθ + ξ)``, ``θ ← θ + v``, ``⟨ξ²⟩ = C``, the stationary state has

    .. math::
        ⟨θ^2⟩ = \frac{ηC(1+β)}{λ(1−β)(2(1+β) − ηλ)},\quad
        ⟨θv⟩ = \frac{η^2 C}{(1−β)(2(1+β) − ηλ)},\quad
        ⟨v^2⟩ = \frac{2η^2 C}{(1−β)(2(1+β) − ηλ)} .

    At β = 0 the first is eq. 11 (C = κλ) and eq. 14 (C = λ ∂f/∂λ).  All arguments broadcast;
    ``eta`` may be a tensor ``(R, 1)``.  Requires 0 < ηλ < 2(1+β).
    """
    number("beta", beta, lo=0, hi=1, hi_open=True)
    _check_stable(lam, eta, beta)
    denom = (1 - beta) * (2 * (1 + beta) - eta * lam)
    return eta * cov * (1 + beta) / (lam * denom), eta**2 * cov / denom, 2 * eta**2 * cov / denom


def theta_sq(lam: Tensor, cov: Tensor, eta: Tensor | float, beta: float = 0.0) -> Tensor:
    """⟨θ_i²⟩ in the stationary state (see :func:`stationary_moments`)."""
    return stationary_moments(lam, cov, eta, beta)[0]


def stationary_state(
    valley: Valley,
    noise: Noise,
    theta_hat: Tensor,
    eta: Tensor | float,
    beta: float,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """Draw (θ, v) from the Gaussian stationary state at fixed θ̂: ``(R, n)`` each."""
    lam = valley.eigenvalues(theta_hat)
    a, b, c = stationary_moments(lam, noise.covariance(lam), eta, beta)
    z1 = torch.randn(lam.shape, generator=generator, dtype=lam.dtype, device=lam.device)
    z2 = torch.randn(lam.shape, generator=generator, dtype=lam.dtype, device=lam.device)
    theta = a.sqrt() * z1
    v = b / a * theta + (c - b**2 / a).clamp_min(0).sqrt() * z2
    return theta, v


def drift_rates(
    valley: Valley,
    noise: Noise,
    theta_hat: Tensor,
    eta: Tensor | float,
    f: SpectralFn = trace_fn,
    *,
    beta: float = 0.0,
) -> tuple[Tensor, Tensor]:
    r"""Predicted mean change of f(λ) per step, exact and to leading order, ``(R,)`` each.

    θ̂ moves by −η/(1−β) · ⟨∇̂L⟩ per step, with ⟨∇̂L⟩ = ½ Σ_j ⟨θ_j²⟩ ∇̂λ_j, so

    .. math:: ⟨Δf⟩ = −\frac{η}{2(1−β)} \sum_j ⟨θ_j^2⟩\, ∇̂f · ∇̂λ_j .

    The exact rate uses the exact ⟨θ_j²⟩ of :func:`theta_sq` (eq. 11 without truncation); the
    leading one its O(η) part ηC_j/(2λ_j(1−β)).  For C = κλ and f = T the leading order is
    −η²κ‖∇̂T‖²/(4(1−β)²).
    """
    number("beta", beta, lo=0, hi=1, hi_open=True)
    lam = valley.eigenvalues(theta_hat).detach()
    eta_col = _eta_column(eta, lam.shape[0], lam)
    cov = noise.covariance(lam)
    grad_f = valley.spectral_grad(f, theta_hat)  # (R, m)
    # ∇̂f · ∇̂λ_j for every j at once: the derivative of λ(θ̂) along ∇̂f
    overlap = torch.func.jvp(valley.eigenvalues, (theta_hat.detach(),), (grad_f,))[1]
    scale = -(eta_col[:, 0] / (2 * (1 - beta)))
    exact = scale * (theta_sq(lam, cov, eta_col, beta) * overlap).sum(-1)
    leading = scale * (eta_col * cov / (2 * lam * (1 - beta)) * overlap).sum(-1)
    return exact, leading


def predicted_drift(
    valley: Valley,
    noise: Noise,
    theta_hat: Tensor,
    eta: Tensor | float,
    f: SpectralFn = trace_fn,
    *,
    beta: float = 0.0,
    order: str = "exact",
) -> Tensor:
    """One of :func:`drift_rates`: ``order`` is ``'exact'`` or ``'leading'``."""
    choice("order", order, ("exact", "leading"))
    exact, leading = drift_rates(valley, noise, theta_hat, eta, f, beta=beta)
    return exact if order == "exact" else leading
