r"""Toy minimal valleys (eq. 1) and the gradient noises of Sections 2–3.

A minimal valley in the coordinates of Lemma 1 is

.. math::  L(\theta, \hat\theta) = \tfrac12 \sum_{i=1}^n \lambda_i(\hat\theta)\, \theta_i^2 ,

with ``theta`` the n non-degenerate coordinates θ and ``theta_hat`` the m degenerate ones θ̂.
Everything here is vectorized over R independent replicas in float64: ``theta`` is
``(R, n)``, ``theta_hat`` is ``(R, m)``, and ``lam`` is ``(R, n)``, one row per replica
(:func:`replicas` makes the starts).

A noise model is a random *potential* V whose gradient is the gradient noise: the stochastic
loss is ``L^B = L + V(θ, λ)``, and :meth:`Noise.gradients` returns ∂V/∂θ and ∂V/∂λ.  For the
Gaussian noises the amplitude is detached from θ̂ (∂V/∂λ = 0), so the noise lives in the
non-degenerate block only, as in the paper's model (C aligned with H there).  Label noise keeps
the amplitude attached: its per-sample loss ``½ Σ (√λ_i θ_i − ε_i)²`` also kicks θ̂, as real
label noise does.

Two sibling modules work on these valleys, and their names are re-exported here, so that
``from hessnoise import valley as V`` reaches all three:

* :mod:`hessnoise.valley_sgd` — heavy-ball SGD on the replicas (β = 0 is plain SGD):
  :func:`sgd` yields every step, :func:`run` only advances the state;
* :mod:`hessnoise.valley_theory` — the exact stationary statistics (eq. 11, eq. 14, and their
  heavy-ball generalization: :func:`stationary_moments`, :func:`theta_sq`,
  :func:`stationary_state`) that the chapters test against, the drift of a spectral function
  they predict (:func:`drift_rates`), and the spectral functions of the theorems
  (:func:`trace_fn`, :func:`logdet_fn`, :func:`frobenius_sq_fn`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from hessnoise._validate import choice, number, positive_int
from hessnoise.valley_sgd import SGDState, Step, run, sgd
from hessnoise.valley_theory import (
    drift_rates,
    frobenius_sq_fn,
    logdet_fn,
    predicted_drift,
    stationary_moments,
    stationary_state,
    theta_sq,
    trace_fn,
)

__all__ = [
    "DTYPE",
    "DesignedNoise",
    "HessianNoise",
    "IsotropicNoise",
    "LabelNoise",
    "LamFn",
    "NoNoise",
    "Noise",
    "SGDState",
    "SpectralFn",
    "Step",
    "Valley",
    "drift_rates",
    "frobenius_sq_fn",
    "kappa_sgd",
    "logdet_fn",
    "logdet_toy",
    "predicted_drift",
    "replicas",
    "run",
    "sgd",
    "stationary_moments",
    "stationary_state",
    "theta_sq",
    "trace_fn",
    "trace_toy",
]

DTYPE = torch.float64
LamFn = Callable[[Tensor], Tensor]
SpectralFn = Callable[[Tensor], Tensor]


# --------------------------------------------------------------------------------------------
# Valleys
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Valley:
    r"""The valley ``L = ½ Σ_i λ_i(θ̂) θ_i²`` with user-given eigenvalue functions.

    Parameters
    ----------
    lam : maps ``theta_hat`` ``(R, m)`` to the eigenvalues λ ``(R, n)``; must be
        differentiable by autograd and positive where it is used.
    n, m : number of non-degenerate and degenerate coordinates.
    name : a label for plots.

    Example
    -------
    >>> import torch
    >>> v = Valley(lambda th: torch.stack([1 + th[:, 0] ** 2], -1), n=1, m=1)
    >>> v.trace(torch.tensor([[2.0]], dtype=torch.float64))
    tensor([5.], dtype=torch.float64)
    """

    lam: LamFn
    n: int
    m: int
    name: str = "valley"

    def __post_init__(self) -> None:
        positive_int("n", self.n)
        positive_int("m", self.m)

    def eigenvalues(self, theta_hat: Tensor) -> Tensor:
        """λ(θ̂), ``(R, n)``; checks the shape the user's function returns."""
        lam = self.lam(theta_hat)
        if lam.shape != (theta_hat.shape[0], self.n):
            raise ValueError(
                f"lam(theta_hat) returned shape {tuple(lam.shape)}; "
                f"expected (R, n) = ({theta_hat.shape[0]}, {self.n})"
            )
        return lam

    def loss(self, theta: Tensor, theta_hat: Tensor) -> Tensor:
        """L per replica, ``(R,)``."""
        return 0.5 * (self.eigenvalues(theta_hat) * theta**2).sum(-1)

    def trace(self, theta_hat: Tensor) -> Tensor:
        """T = Σ λ_i, ``(R,)``."""
        return self.eigenvalues(theta_hat).sum(-1)

    def logdet(self, theta_hat: Tensor) -> Tensor:
        """log Det = Σ log λ_i of the non-degenerate block, ``(R,)``."""
        return self.eigenvalues(theta_hat).log().sum(-1)

    def spectral_grad(self, f: SpectralFn, theta_hat: Tensor) -> Tensor:
        """∇̂ f(λ(θ̂)) for a spectral function ``f: (R, n) → (R,)``; returns ``(R, m)``."""
        with torch.enable_grad():
            th = theta_hat.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(f(self.eigenvalues(th)).sum(), th)
        return g

    def lam_jacobian(self, theta_hat: Tensor) -> Tensor:
        """∂λ_i/∂θ̂_k, ``(R, n, m)``."""
        cols = [self.spectral_grad(lambda lam, i=i: lam[:, i], theta_hat) for i in range(self.n)]
        return torch.stack(cols, 1)


def trace_toy() -> Valley:
    r"""The paper's first toy (Section 4.2, Fig. 2b): ``L = |θ̂₁+θ̂₂| θ₁² + |θ̂₁+2θ̂₂| θ₂²``.

    The paper writes θ₃, θ₄ for θ̂₁, θ̂₂ and has no ½, so λ₁ = 2|θ̂₁+θ̂₂| and
    λ₂ = 2|θ̂₁+2θ̂₂|.  Where neither changes sign ∇̂λ is constant and ‖∇̂T‖² = 52.
    """
    return Valley(
        lambda th: (
            2 * torch.stack([(th[:, 0] + th[:, 1]).abs(), (th[:, 0] + 2 * th[:, 1]).abs()], -1)
        ),
        n=2,
        m=2,
        name="trace toy",
    )


def logdet_toy() -> Valley:
    r"""The paper's second toy (Section 4.2, Fig. 2c–d):
    ``L = (4 − 2e^{−θ̂₁−θ̂₂}) θ₁² + e^{−(θ̂₁−θ̂₂)²} θ₂²``, so λ₁ = 2(4 − 2e^{−θ̂₁−θ̂₂}) and
    λ₂ = 2e^{−(θ̂₁−θ̂₂)²}: the trace and the determinant pull θ̂ in different directions.
    """
    return Valley(
        lambda th: (
            2
            * torch.stack(
                [4 - 2 * torch.exp(-th[:, 0] - th[:, 1]), torch.exp(-((th[:, 0] - th[:, 1]) ** 2))],
                -1,
            )
        ),
        n=2,
        m=2,
        name="trace/determinant toy",
    )


# --------------------------------------------------------------------------------------------
# Noise models
# --------------------------------------------------------------------------------------------
def kappa_sgd(batch_size: int, n_samples: int) -> float:
    """κ = (1/S)(1 − S/M), the SGD noise scale of eq. 10 for batch size S out of M samples."""
    positive_int("n_samples", n_samples)
    number("batch_size", batch_size, lo=1, hi=n_samples, integer=True)
    return (1.0 / batch_size) * (1.0 - batch_size / n_samples)


class Noise:
    """Base class: a random potential V whose gradient is the gradient noise."""

    def covariance(self, lam: Tensor) -> Tensor:
        """Diagonal C_ii of the noise covariance in the non-degenerate block, ``(R, n)``."""
        raise NotImplementedError

    def gradients(
        self, theta: Tensor, lam: Tensor, generator: torch.Generator
    ) -> tuple[Tensor, Tensor | None]:
        """One draw of (∂V/∂θ, ∂V/∂λ), each ``(R, n)``: Gaussian noise with covariance
        :meth:`covariance` in θ, amplitude detached from λ (∂V/∂λ is ``None``, zero)."""
        z = torch.randn(theta.shape, generator=generator, dtype=theta.dtype, device=theta.device)
        return self.covariance(lam).sqrt() * z, None


@dataclass(frozen=True)
class NoNoise(Noise):
    """Gradient descent: no noise."""

    def covariance(self, lam: Tensor) -> Tensor:
        return torch.zeros_like(lam)

    def gradients(
        self, theta: Tensor, lam: Tensor, generator: torch.Generator
    ) -> tuple[Tensor, Tensor | None]:
        return torch.zeros_like(theta), None


@dataclass(frozen=True)
class HessianNoise(Noise):
    """SGD's noise as the paper models it (eq. 10): C = κH on the non-degenerate block.

    ``kappa`` = (1/S)(1 − S/M) for mini-batches of S out of M samples; see :func:`kappa_sgd`.
    """

    kappa: float

    def __post_init__(self) -> None:
        number("kappa", self.kappa, lo=0)

    def covariance(self, lam: Tensor) -> Tensor:
        return self.kappa * lam


@dataclass(frozen=True)
class IsotropicNoise(Noise):
    """Isotropic noise in the non-degenerate subspace, C = c·1 (Corollary 2.1).

    ``c`` is a number, or one level per replica as a tensor ``(R, 1)``.
    """

    c: float | Tensor

    def __post_init__(self) -> None:
        if isinstance(self.c, Tensor):
            if self.c.ndim != 2 or self.c.shape[1] != 1 or (self.c < 0).any():
                raise ValueError(f"c must be ≥ 0 and of shape (R, 1); got {tuple(self.c.shape)}")
        else:
            number("c", self.c, lo=0)

    def covariance(self, lam: Tensor) -> Tensor:
        if isinstance(self.c, Tensor):
            return self.c.to(lam).expand_as(lam)
        return torch.full_like(lam, self.c)


@dataclass(frozen=True)
class DesignedNoise(Noise):
    r"""Theorem 2's noise for a spectral function f: C_ii = κ λ_i ∂f/∂λ_i.

    ``f`` maps λ ``(R, n)`` to ``(R,)``; ∂f/∂λ comes from autograd.  Theorem 2 needs
    ∂f/∂λ_i ≥ 0, which is what makes C a covariance; a negative derivative raises.
    """

    f: SpectralFn
    kappa: float = 1.0

    def __post_init__(self) -> None:
        number("kappa", self.kappa, lo=0)

    def covariance(self, lam: Tensor) -> Tensor:
        with torch.enable_grad():
            x = lam.detach().requires_grad_(True)
            (df,) = torch.autograd.grad(self.f(x).sum(), x)
        if (df < 0).any():
            raise ValueError(
                "DesignedNoise needs ∂f/∂λ_i ≥ 0 (Theorem 2); f has a negative derivative at "
                f"λ = {lam[(df < 0).any(-1)][0].tolist()}"
            )
        return self.kappa * lam.detach() * df


@dataclass(frozen=True)
class LabelNoise(Noise):
    r"""Label noise: the per-sample loss is ½ Σ_i (√λ_i θ_i − ε_i)² with fresh labels ε_i.

    The gradient noise in θ has covariance σ²λ (= κH with κ = σ²), and, unlike the Gaussian
    models, it also moves θ̂ by −ε_i θ_i ∇̂√λ_i (zero mean).  ``dist`` is ``'gaussian'`` or
    ``'rademacher'`` (ε = ±σ).
    """

    sigma: float
    dist: str = "gaussian"

    def __post_init__(self) -> None:
        number("sigma", self.sigma, lo=0)
        choice("dist", self.dist, ("gaussian", "rademacher"))

    def covariance(self, lam: Tensor) -> Tensor:
        return self.sigma**2 * lam

    def gradients(
        self, theta: Tensor, lam: Tensor, generator: torch.Generator
    ) -> tuple[Tensor, Tensor | None]:
        """V = −σ Σ ε_i √λ_i θ_i: ∂V/∂θ = −σε√λ and ∂V/∂λ = −σεθ/(2√λ) (zero where λ ≤ 0)."""
        if self.dist == "gaussian":
            eps = torch.randn(
                theta.shape, generator=generator, dtype=theta.dtype, device=theta.device
            )
        else:
            bits = torch.randint(0, 2, theta.shape, generator=generator, device=theta.device)
            eps = (2 * bits - 1).to(theta.dtype)
        root = lam.clamp_min(0).sqrt()
        d_lam = torch.where(root > 0, -self.sigma * eps * theta / (2 * root), 0.0)
        return -self.sigma * eps * root, d_lam


def replicas(
    theta_hat0: Tensor | list[float] | tuple[float, ...],
    count: int,
    device: torch.device | str = "cpu",
) -> Tensor:
    """``count`` copies of one θ̂ ``(m,)`` as an ``(R, m)`` float64 tensor on ``device``; a
    tensor ``(count, m)`` (one start per replica) is returned as it is, on ``device``."""
    positive_int("count", count)
    th = torch.as_tensor(theta_hat0, dtype=DTYPE, device=device)
    if th.ndim == 2:
        if th.shape[0] != count:
            raise ValueError(f"theta_hat0 has {th.shape[0]} rows; expected count = {count}")
        return th.clone()
    return th.reshape(1, -1).repeat(count, 1)
