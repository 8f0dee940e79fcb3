r"""Chapter "SGD noise decreases the Hessian trace": eq. 11, Theorem 1 and Fig. 2(b).

Everything runs on the paper's first toy, where ∇̂λ is constant as long as neither
λ changes sign, so the trace is linear in θ̂ and the change of trace over a window is exactly
∇̂T · (θ̂_end − θ̂_start).  For each learning rate, R replicas start in the exact stationary
state, equilibrate for 1000 steps and are measured for 1000 more (the paper's protocol).

* :func:`drift_sweep` measures, per learning rate, the change of trace of every replica, the
  exact finite-η prediction integrated along its own trajectory, and the stationary ⟨θ_i²⟩
  against eq. 11.
* :func:`leading_coefficient` fits the η → 0 limit of ΔT/(Nη²).
* :func:`rate_leading`, :func:`rate_paper`: the corrected Theorem 1 rate, and the rate as printed.
* :func:`theorem1_check` compares the fitted limit with both constants;
  :func:`noise_comparison` compares two noises' drifts learning rate by learning rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from hessnoise import valley as V
from hessnoise._validate import number, numbers, positive_int
from hessnoise.drift import measure_drift
from hessnoise.scales import by_scale
from hessnoise.stats import Estimate, z_between
from hessnoise.threads import threads


@dataclass(frozen=True)
class TraceDecreaseConfig:
    """Sizes and settings of the chapter.

    ``etas`` sweep plain SGD (Fig. 2b); ``momentum_etas`` sweep heavy-ball SGD with ``beta``;
    ``label_etas`` compare label noise with Gaussian κH noise.  κ = (1/S)(1 − S/M) with
    ``batch_size`` S out of ``n_samples`` M.  Points with η·λ_max ≤ ``fit_eta_lam`` enter
    the leading-order fit.  The exact prediction is evaluated every ``stride`` steps.
    """

    replicas: int
    etas: tuple[float, ...]
    momentum_etas: tuple[float, ...]
    label_etas: tuple[float, ...]
    beta: float = 0.9
    equil_steps: int = 1000
    measure_steps: int = 1000
    batch_size: int = 100
    n_samples: int = 10_000
    theta_hat0: tuple[float, float] = (10.0, 5.0)
    fit_eta_lam: float = 0.2
    stride: int = 10

    def __post_init__(self) -> None:
        positive_int("replicas", self.replicas)
        for name in ("etas", "momentum_etas", "label_etas"):
            numbers(name, getattr(self, name), lo=0, lo_open=True)
        number("beta", self.beta, lo=0, hi=1, hi_open=True)
        positive_int("equil_steps", self.equil_steps)
        positive_int("measure_steps", self.measure_steps)
        number("batch_size", self.batch_size, lo=1, hi=self.n_samples, integer=True)
        number("fit_eta_lam", self.fit_eta_lam, lo=0, lo_open=True)
        positive_int("stride", self.stride)
        if self.measure_steps % self.stride:
            raise ValueError(f"stride={self.stride} must divide measure_steps={self.measure_steps}")

    @property
    def kappa(self) -> float:
        return V.kappa_sgd(self.batch_size, self.n_samples)

    @classmethod
    def for_scale(cls, scale: str) -> TraceDecreaseConfig:
        etas = (0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.03, 0.045)
        return by_scale(
            scale,
            smoke=cls(
                replicas=4096,
                etas=(0.001, 0.002, 0.004, 0.016, 0.045),
                momentum_etas=(0.0005, 0.002),
                label_etas=(0.004,),
            ),
            small=cls(
                replicas=12288,
                etas=etas,
                momentum_etas=(0.0005, 0.001, 0.002, 0.004),
                label_etas=(0.002, 0.008),
            ),
            paper=cls(
                replicas=65536,
                etas=etas,
                momentum_etas=(0.0005, 0.001, 0.002, 0.004, 0.008),
                label_etas=(0.002, 0.008, 0.03),
            ),
        )


def grad_trace_sq(valley: V.Valley, theta_hat0: tuple[float, ...]) -> float:
    """‖∇̂T‖² at θ̂₀ (52 for the first toy wherever no λ changes sign)."""
    g = valley.spectral_grad(V.trace_fn, V.replicas(theta_hat0, 1))
    return (g**2).sum().item()


def rate_leading(eta: float | Tensor, kappa: float, grad_sq: float, beta: float = 0.0):
    """The corrected Theorem 1: ⟨ΔT⟩ per step = −η²κ‖∇̂T‖² / (4(1−β)²)."""
    return -(eta**2) * kappa * grad_sq / (4 * (1 - beta) ** 2)


def rate_paper(eta: float | Tensor, kappa: float, grad_sq: float):
    """Theorem 1 as printed: ⟨ΔT⟩ per step = −(η²/2S)(1 − S/M)‖∇̂T‖² = −η²κ‖∇̂T‖²/2."""
    return -(eta**2) * kappa * grad_sq / 2


@dataclass
class DriftRun:
    """One learning rate: per-replica change of trace ``delta`` ``(R,)`` over the measured
    window, its exact prediction ``predicted`` ``(R,)``, and ⟨θ_i²⟩ measured over theory
    ``theta_sq_ratio`` ``(n,)``; ``theta_sq`` and ``lam`` are the window means ``(n,)``."""

    eta: float
    beta: float
    noise: str
    delta: Tensor
    predicted: Tensor
    theta_sq_ratio: Tensor
    theta_sq: Tensor
    lam: Tensor
    eta_lam_max: float
    steps: int

    @property
    def mean(self) -> float:
        return self.delta.mean().item()

    @property
    def se(self) -> float:
        return self.delta.std().item() / math.sqrt(self.delta.numel())

    @property
    def estimate(self) -> Estimate:
        """The mean change of trace over replicas with its standard error."""
        return Estimate(self.mean, self.se, self.delta.numel())

    @property
    def predicted_mean(self) -> float:
        return self.predicted.mean().item()

    @property
    def exact_relerr(self) -> float:
        """|measured / exact prediction − 1| for the replica means."""
        return abs(self.mean / self.predicted_mean - 1)

    @property
    def exact_relerr_se(self) -> float:
        """Standard error of that ratio, from the spread of measured − predicted over replicas."""
        diff = self.delta - self.predicted
        return diff.std().item() / math.sqrt(diff.numel()) / abs(self.predicted_mean)


@threads("small")
def drift_sweep(
    valley: V.Valley,
    noise: V.Noise,
    etas: tuple[float, ...],
    cfg: TraceDecreaseConfig,
    *,
    beta: float = 0.0,
    seed: int = 0,
    label: str = "",
    device: torch.device | str = "cpu",
) -> list[DriftRun]:
    """All learning rates at once (``R`` replicas each, stacked), following the paper's
    protocol: stationary start, ``equil_steps`` steps, then ``measure_steps`` measured steps."""
    numbers("etas", etas, lo=0, lo_open=True)
    r, k = cfg.replicas, len(etas)
    m = measure_drift(
        valley,
        noise,
        cfg.theta_hat0,
        torch.tensor(etas, dtype=V.DTYPE).repeat_interleave(r),
        replicas=k * r,
        steps=cfg.measure_steps,
        equil_steps=cfg.equil_steps,
        beta=beta,
        stride=cfg.stride,
        seed=seed,
        device=device,
    )

    def per_eta(t: Tensor) -> Tensor:
        return t.reshape(k, r, *t.shape[1:])

    return [
        DriftRun(
            eta=eta,
            beta=beta,
            noise=label or type(noise).__name__,
            delta=per_eta(m.delta["trace"])[i],
            predicted=per_eta(m.predicted["trace"])[i],
            theta_sq_ratio=per_eta(m.theta_sq_ratio)[i].mean(0),
            theta_sq=per_eta(m.theta_sq)[i].mean(0),
            lam=per_eta(m.lam)[i].mean(0),
            eta_lam_max=per_eta(m.eta_lam_max)[i].max().item(),
            steps=m.steps,
        )
        for i, eta in enumerate(etas)
    ]


@dataclass(frozen=True)
class LeadingFit:
    """ΔT/(Nη²) = a + bη, weighted least squares over the points with η·λ_max ≤ the cut.

    ``a`` is the leading-order rate coefficient per step (ΔT per step = a η²), ``a_se`` its
    standard error, ``r2`` the R² of ΔT against η² through the origin over the same points.
    """

    a: float
    a_se: float
    b: float
    r2: float
    n_points: int

    @property
    def estimate(self) -> Estimate:
        """The leading coefficient a with its standard error."""
        return Estimate(self.a, self.a_se, self.n_points)


def leading_coefficient(runs: list[DriftRun], max_eta_lam: float) -> LeadingFit:
    """Fit the η → 0 limit of the per-step rate divided by η²."""
    pts = [r for r in runs if r.eta_lam_max <= max_eta_lam]
    if len(pts) < 3:
        raise ValueError(
            f"max_eta_lam={max_eta_lam}: only {len(pts)} learning rates qualify; need ≥ 3"
        )
    eta = torch.tensor([r.eta for r in pts], dtype=torch.float64)
    y = torch.tensor([r.mean for r in pts], dtype=torch.float64) / (pts[0].steps * eta**2)
    w = 1 / (torch.tensor([r.se for r in pts], dtype=torch.float64) / (pts[0].steps * eta**2)) ** 2
    design = torch.stack([torch.ones_like(eta), eta], 1)
    cov = torch.linalg.inv(design.T @ (w[:, None] * design))
    coef = cov @ design.T @ (w * y)
    # R² of the linear law ΔT = c η² through the origin
    x2 = eta**2
    dt = torch.tensor([r.mean for r in pts], dtype=torch.float64)
    c = (x2 * dt).sum() / (x2**2).sum()
    r2 = 1 - ((dt - c * x2) ** 2).sum() / ((dt - dt.mean()) ** 2).sum()
    return LeadingFit(coef[0].item(), cov[0, 0].sqrt().item(), coef[1].item(), r2.item(), len(pts))


def breakdown_eta_lam(runs: list[DriftRun], leading_rate, tolerance: float = 0.05) -> float:
    """The smallest η·λ_max at which the measured rate departs from the leading order by more
    than ``tolerance`` (relative); ``inf`` if it never does."""
    for r in sorted(runs, key=lambda r: r.eta):
        if abs(r.mean / (leading_rate(r.eta) * r.steps) - 1) > tolerance:
            return r.eta_lam_max
    return math.inf


@dataclass(frozen=True)
class Theorem1Check:
    """The fitted η → 0 coefficient of the trace drift against Theorem 1's two constants.

    ``corrected`` = −κ‖∇̂T‖²/4 and ``printed`` = −κ‖∇̂T‖²/2 are the per-step rates per η²;
    ``coefficient_relerr`` = |a/corrected − 1|; ``exact_max_relerr`` is the worst gap between
    measurement and the exact finite-η prediction over all learning rates; ``r2`` describes
    how straight ΔT is in η² (it cannot tell ¼ from ½); ``breakdown_eta_lam`` is where the
    leading order is first off by more than 5 %; ``eta_lam_top`` the largest ηλ measured.
    """

    fit: LeadingFit
    corrected: float
    printed: float
    coefficient_relerr: float
    printed_over_measured: float
    exact_max_relerr: float
    r2: float
    breakdown_eta_lam: float
    eta_lam_top: float


def theorem1_check(
    runs: list[DriftRun], kappa: float, grad_sq: float, max_eta_lam: float
) -> Theorem1Check:
    """Fit the leading coefficient over the runs with ηλ_max ≤ ``max_eta_lam`` and compare it
    with the corrected and the printed Theorem 1 (see :class:`Theorem1Check`)."""
    fit = leading_coefficient(runs, max_eta_lam)
    corrected, printed = rate_leading(1.0, kappa, grad_sq), rate_paper(1.0, kappa, grad_sq)
    return Theorem1Check(
        fit=fit,
        corrected=corrected,
        printed=printed,
        coefficient_relerr=abs(fit.a / corrected - 1),
        printed_over_measured=printed / fit.a,
        exact_max_relerr=max(r.exact_relerr for r in runs),
        r2=fit.r2,
        breakdown_eta_lam=breakdown_eta_lam(runs, lambda eta: rate_leading(eta, kappa, grad_sq)),
        eta_lam_top=max(r.eta_lam_max for r in runs),
    )


def leading_ratios(runs: list[DriftRun], kappa: float, grad_sq: float, beta: float) -> list[float]:
    """Measured ΔT over the leading-order prediction η²κ‖∇̂T‖²/4(1−β)² per run."""
    return [r.mean / (rate_leading(r.eta, kappa, grad_sq, beta) * r.steps) for r in runs]


def noise_comparison(runs: list[DriftRun], reference: list[DriftRun]) -> list[float]:
    """|z| between each run's mean ΔT and the reference run at the same η (independent
    replicas), in standard errors of the difference."""
    by_eta = {r.eta: r for r in reference}
    return [abs(z_between(r.estimate, by_eta[r.eta].estimate)) for r in runs]
