r"""Toy minimal valleys (eq. 1) and the gradient noises of Sections 2–3.

A minimal valley in the coordinates of Lemma 1 is

.. math::  L(\theta, \hat\theta) = \tfrac12 \sum_{i=1}^n \lambda_i(\hat\theta)\, \theta_i^2 ,

with ``theta`` the n non-degenerate coordinates θ and ``theta_hat`` the m degenerate ones θ̂.
Everything here is vectorized over R independent replicas in float64: ``theta`` is
``(R, n)``, ``theta_hat`` is ``(R, m)``, and ``lam`` is ``(R, n)``, one row per replica.

A noise model is a random *potential* V whose gradient is the gradient noise: the stochastic
loss is ``L^B = L + V(θ, λ)``, and :meth:`Noise.gradients` returns ∂V/∂θ and ∂V/∂λ.  For the
Gaussian noises the amplitude is detached from θ̂ (∂V/∂λ = 0), so the noise lives in the
non-degenerate block only, as in the paper's model (C aligned with H there).  Label noise keeps
the amplitude attached: its per-sample loss ``½ Σ (√λ_i θ_i − ε_i)²`` also kicks θ̂, as real
label noise does.

:func:`sgd` runs heavy-ball SGD (β = 0 is plain SGD) and yields every step;
:func:`stationary_moments` and :func:`theta_sq` give the exact stationary statistics
(eq. 11, eq. 14, and their heavy-ball generalization) that the chapters test against.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor

import hessnoise._forward_ad  # noqa: F401  (loads forward-mode AD without torch's warning)
from hessnoise._validate import choice, number, positive_int

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


def _eta_column(eta: Tensor | float, replicas: int, like: Tensor) -> Tensor:
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
