r"""Chapter "The minimal valley": Lemma 1, Lemma 2 and the master equation (eq. 3).

* :func:`lemma1_invariance` runs SGD in rotated-and-shifted coordinates w and in the valley
  coordinates θ = Qw − v of Lemma 1 with the same noise, and returns how far apart the two
  trajectories end up (they should agree to rounding).
* :func:`lemma2_residual` evaluates ‖H(P(w)) J(w)‖ for a curved valley whose minima form a
  sphere (Lemma 2 says it vanishes).
* :func:`fdr` measures both sides of the fluctuation–dissipation relation that eq. 3 gives
  for O = θ_i²:  ⟨θ_i ∂_i L⟩ = (η/2)⟨(∂_i L^B)²⟩.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hessnoise import valley as V
from hessnoise._validate import number, numbers, positive_int
from hessnoise.progress import progress
from hessnoise.scales import by_scale
from hessnoise.threads import threads


@dataclass(frozen=True)
class MinimalValleyConfig:
    """Sizes of the chapter's experiments.

    ``relax_equil`` and ``relax_measure`` are the equilibration and measurement windows in
    units of the slowest relaxation time 1/(η λ_min) of the non-degenerate block.
    """

    replicas: int
    etas: tuple[float, ...]
    relax_equil: float
    relax_measure: float
    batch_size: int = 32
    n_samples: int = 1024
    theta_hat0: tuple[float, float] = (2.0, 1.0)

    def __post_init__(self) -> None:
        positive_int("replicas", self.replicas)
        numbers("etas", self.etas, lo=0, lo_open=True)
        number("relax_equil", self.relax_equil, lo=1)
        number("relax_measure", self.relax_measure, lo=1)
        number("batch_size", self.batch_size, lo=1, hi=self.n_samples, integer=True)

    @classmethod
    def for_scale(cls, scale: str) -> MinimalValleyConfig:
        return by_scale(
            scale,
            smoke=cls(replicas=4096, etas=(0.01, 0.05, 0.15), relax_equil=10, relax_measure=80),
            small=cls(replicas=16384, etas=(0.01, 0.05, 0.15), relax_equil=10, relax_measure=200),
            paper=cls(replicas=65536, etas=(0.01, 0.05, 0.15), relax_equil=20, relax_measure=400),
        )

    @property
    def kappa(self) -> float:
        """κ = (1/S)(1 − S/M)."""
        return V.kappa_sgd(self.batch_size, self.n_samples)


# --------------------------------------------------------------------------------------------
# Lemma 1 and Lemma 2
# --------------------------------------------------------------------------------------------
def random_rotation(dim: int, generator: torch.Generator) -> torch.Tensor:
    """A Haar-random orthogonal matrix ``(dim, dim)`` float64 (QR with sign fix)."""
    q, r = torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=V.DTYPE))
    return q * torch.sign(torch.diagonal(r))


@threads("small")
def lemma1_invariance(
    valley: V.Valley,
    theta_hat0: tuple[float, ...],
    *,
    eta: float,
    kappa: float,
    steps: int,
    seed: int,
) -> float:
    """Max distance between SGD run in θ and SGD run in w = Qᵀ(θ + v), mapped back to θ.

    Both runs see the same noise draw, rotated: ξ_w = Qᵀ ξ_θ.  Returns
    ``max_t ‖(Q w_t − v) − θ_t‖∞`` (float64), which Lemma 1 says is rounding error.
    """
    positive_int("steps", steps)
    gen = torch.Generator().manual_seed(seed)
    n, m = valley.n, valley.m
    q = random_rotation(n + m, gen)
    shift = torch.randn(n + m, generator=gen, dtype=V.DTYPE)
    theta = torch.cat(
        [
            0.1 * torch.randn(n, dtype=V.DTYPE, generator=gen),
            torch.as_tensor(theta_hat0, dtype=V.DTYPE),
        ]
    )
    w = q.T @ (theta + shift)

    def loss(x: torch.Tensor) -> torch.Tensor:  # x: (n + m,) in valley coordinates
        return valley.loss(x[:n].reshape(1, n), x[n:].reshape(1, m))[0]

    worst = 0.0
    for _ in range(steps):
        lam = valley.eigenvalues(theta[n:].reshape(1, m))[0]
        xi = torch.cat(
            [
                (kappa * lam).sqrt() * torch.randn(n, dtype=V.DTYPE, generator=gen),
                torch.zeros(m, dtype=V.DTYPE),
            ]
        )
        g_theta = torch.func.grad(loss)(theta) + xi
        g_w = torch.func.grad(lambda ww: loss(q @ ww - shift))(w) + q.T @ xi
        theta = theta - eta * g_theta
        w = w - eta * g_w
        worst = max(worst, (q @ w - shift - theta).abs().max().item())
    return worst


def lemma2_residual(points: int = 64, *, lam: float = 3.0, dim: int = 3, seed: int = 0) -> float:
    r"""max ‖H(P(w)) J(w)‖_F over random w near a sphere of minima.

    The valley ``L(w) = ½ λ (‖w‖ − 1)²`` has the unit sphere as its set of minima, the
    projection P(w) = w/‖w‖, and Lemma 2 says H(P(w)) J(w) = 0 with J = ∂P/∂w.
    """
    positive_int("points", points)
    gen = torch.Generator().manual_seed(seed)

    def loss(w: torch.Tensor) -> torch.Tensor:
        return 0.5 * lam * (w.norm() - 1) ** 2

    def project(w: torch.Tensor) -> torch.Tensor:
        return w / w.norm()

    worst = 0.0
    for _ in range(points):
        w = torch.randn(dim, generator=gen, dtype=V.DTYPE)
        w = w / w.norm() * (1 + 0.2 * torch.rand((), generator=gen, dtype=V.DTYPE))
        hess = torch.autograd.functional.hessian(loss, project(w))
        jac = torch.autograd.functional.jacobian(project, w)
        worst = max(worst, torch.linalg.matrix_norm(hess @ jac).item())
    return worst


# --------------------------------------------------------------------------------------------
# The master equation
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FDRResult:
    """Both sides of ⟨θ_i ∂_i L⟩ = (η/2)⟨C̃_ii⟩ for one noise and one η; each ``(n,)``.

    ``rhs`` uses the sampled ⟨(∂_i L^B)²⟩; ``rhs_conditional`` uses the mini-batch average
    C̃_ii = C_ii + (∂_i L)² evaluated at each visited θ.  ``theta_sq`` is the measured ⟨θ_i²⟩.
    """

    noise: str
    eta: float
    lhs: torch.Tensor
    rhs: torch.Tensor
    rhs_conditional: torch.Tensor
    theta_sq: torch.Tensor
    lam: torch.Tensor
    steps: int

    @property
    def rel_err(self) -> torch.Tensor:
        """|lhs/rhs − 1| per coordinate."""
        return (self.lhs / self.rhs - 1).abs()


@threads("small")
def fdr(
    valley: V.Valley,
    noise: V.Noise,
    eta: float,
    theta_hat0: tuple[float, ...],
    *,
    replicas: int,
    relax_equil: float,
    relax_measure: float,
    seed: int,
    label: str = "",
) -> FDRResult:
    """Measure both sides of the θ_i² master equation in the stationary state of SGD.

    Replicas start in the exact stationary state at θ̂₀, equilibrate for ``relax_equil``
    relaxation times 1/(ηλ_min) and are measured over the next ``relax_measure``.
    """
    number("eta", eta, lo=0, lo_open=True)
    gen = torch.Generator().manual_seed(seed)
    theta_hat = V.replicas(theta_hat0, replicas)
    lam0 = valley.eigenvalues(theta_hat[:1])[0]
    tau = 1.0 / (eta * lam0.min().item())
    theta, v = V.stationary_state(valley, noise, theta_hat, eta, 0.0, gen)
    state = V.SGDState(theta, theta_hat, v)
    V.run(valley, noise, state, eta, max(1, round(relax_equil * tau)), generator=gen)
    steps = max(1, round(relax_measure * tau))
    lhs = rhs = rhs_c = th2 = lam_sum = 0.0
    for s in V.sgd(valley, noise, state, eta, steps, generator=gen):
        dl = s.lam * s.theta  # ∂_i L, the full-batch gradient
        lhs = lhs + (s.theta * dl).mean(0)
        rhs = rhs + (s.grad**2).mean(0)
        rhs_c = rhs_c + (noise.covariance(s.lam) + dl**2).mean(0)
        th2 = th2 + (s.theta**2).mean(0)
        lam_sum = lam_sum + s.lam.mean(0)
    return FDRResult(
        noise=label or type(noise).__name__,
        eta=eta,
        lhs=lhs / steps,
        rhs=eta / 2 * rhs / steps,
        rhs_conditional=eta / 2 * rhs_c / steps,
        theta_sq=th2 / steps,
        lam=lam_sum / steps,
        steps=steps,
    )


@threads("small")
def fdr_sweep(cfg: MinimalValleyConfig, seed: int) -> list[FDRResult]:
    """The master-equation check on the paper's first toy for three noises and every η."""
    valley = V.trace_toy()
    noises = {
        "SGD model, C = κH": V.HessianNoise(cfg.kappa),
        "isotropic, C = κ·tr(H)/n": V.IsotropicNoise(
            cfg.kappa * valley.trace(V.replicas(cfg.theta_hat0, 1)).item() / valley.n
        ),
        "label noise, σ² = κ": V.LabelNoise(cfg.kappa**0.5),
    }
    runs = [
        (k, label, noise, j, eta)
        for k, (label, noise) in enumerate(noises.items())
        for j, eta in enumerate(cfg.etas)
    ]
    out = []
    for k, label, noise, j, eta in progress(
        runs, desc="master-equation sweep", label=lambda r: f"{r[1]}, eta={r[4]:g}"
    ):
        out.append(
            fdr(
                valley,
                noise,
                eta,
                cfg.theta_hat0,
                replicas=cfg.replicas,
                relax_equil=cfg.relax_equil,
                relax_measure=cfg.relax_measure,
                seed=seed + 100 * k + j,
                label=label,
            )
        )
    return out


@dataclass(frozen=True)
class FDRSummary:
    """The worst gap of the master equation over noises, learning rates and coordinates, with
    the sampled (∂ᵢL^B)² (``max_relerr``) and with the batch-averaged C̃ᵢᵢ
    (``max_relerr_conditional``), and the largest ηλ of the sweep."""

    max_relerr: float
    max_relerr_conditional: float
    eta_lam_max: float


def summarize_fdr(results: list[FDRResult]) -> FDRSummary:
    """Reduce :func:`fdr_sweep`'s results to their worst gaps (see :class:`FDRSummary`)."""
    return FDRSummary(
        max_relerr=max(r.rel_err.max().item() for r in results),
        max_relerr_conditional=max(
            (r.lhs / r.rhs_conditional - 1).abs().max().item() for r in results
        ),
        eta_lam_max=max(r.eta * r.lam.max().item() for r in results),
    )
