r"""The slow flow along the floor of the Section 4.1 network: Theorem 1 on a real network.

At an interpolating floor Γ the sampled-label SGD of :mod:`hessnoise.experiments.
negative_eigenvalues` has noise covariance exactly H/S, and Li, Wang & Arora (2022) predict
that the floor point below the SGD state, Φ(θ_t) (the gradient-flow limit map,
:mod:`hessnoise.projection`), follows

    d tr H(Φ)/dτ = −𝒞 ‖P_Γ∇tr H‖²,    𝒞 = ηκ/4,  τ = ηt,

the book's corrected Theorem 1, with the finite-η form −4𝒞⟨P_Γ∇tr H, P_Γ∇R_η⟩ of Damian,
Ma & Lee's regularizer R_η = −(1/2η) Σ log(1 − ηλ_i/2).  This module holds the prediction
on the network:

* :class:`SlowFlowConfig`: the experiment's sizes at each scale;
* :func:`predict`: the exact gradient of tr H (a third-derivative contraction), its tangential
  projection, the per-eigenvalue gradients, and the predicted rates;
* :func:`instrument_checks`: the instrument against independent references (central
  differences of dense traces, the dense spectrum, the sampled-label noise against H/S);
* :func:`prepare` and :func:`prediction_facts`: one seed's floor and prediction, and the
  numbers the chapter states about it.

The floor's geometry from the logits (Gauss–Newton onto the floor and the frame there) is in
:mod:`hessnoise.experiments.slow_flow_floor`; the SGD runs, with the two maps onto the floor
that the chapter compares, in :mod:`hessnoise.experiments.slow_flow_runs`; their fits in
:mod:`hessnoise.experiments.slow_flow_fits`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from hessnoise import projection
from hessnoise._validate import choice, number, numbers, positive_int
from hessnoise.experiments import sweep_design
from hessnoise.experiments.floor import Floor, FloorConfig, Problem, find_floor, setup
from hessnoise.experiments.slow_flow_floor import landing
from hessnoise.scales import by_scale
from hessnoise.threads import threads


# --------------------------------------------------------------------------------------------
# The experiment's sizes
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SlowFlowConfig:
    """Sizes of the chapter's experiment.

    The sweeps are those of the negative-eigenvalue chapter: an η sweep (``etas``) at batch
    size ``batch_size0`` and an S sweep (``batch_sizes``) at ``eta0``, sharing their centre;
    noise scale 𝒞 = η/4S.  Each (η, S) runs ``replicas`` independent sampled-label SGD runs
    from the floor for SGD time ``tau_window``, and maps the state onto the floor at
    ``points`` evenly spaced times.  The gradient-flow limit map integrates gradient flow for
    ``flow_time`` with Runge–Kutta step ``flow_step`` (:func:`hessnoise.projection.limit_map`).
    ``series_taus`` are the times of the denser series (centre run, first seed) that shows
    the Gauss–Newton map's transient; ``reference_flow_time`` the much longer flow against
    which the map is checked (Φ(GF_t(θ)) = Φ(θ)).  ``tolerance``, ``cosine_bound`` and
    ``z_bound`` are the chapter's criteria; ``resolution_bound`` bounds the relative
    difference that the collapse test could miss (its soundness).
    """

    floor: FloorConfig
    etas: tuple[float, ...]
    batch_sizes: tuple[int, ...]
    eta0: float
    batch_size0: int
    tau_window: float
    points: int
    replicas: int
    seeds: int
    flow_time: float = 10.0
    flow_step: float = 0.1
    series_taus: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 40.0)
    series_replicas: int = 4
    reference_flow_time: float = 100.0
    tolerance: float = 0.1
    cosine_bound: float = 0.8
    z_bound: float = 3.0
    resolution_bound: float = 0.3

    def __post_init__(self) -> None:
        numbers("etas", self.etas, lo=0, lo_open=True)
        numbers("batch_sizes", self.batch_sizes, lo=1, hi=self.floor.n, integer=True)
        choice("eta0", self.eta0, self.etas)
        choice("batch_size0", self.batch_size0, self.batch_sizes)
        number("tau_window", self.tau_window, lo=0, lo_open=True)
        positive_int("points", self.points)
        positive_int("replicas", self.replicas)
        if self.replicas < 2:
            raise ValueError(f"replicas={self.replicas!r} must be ≥ 2 (standard errors)")
        positive_int("seeds", self.seeds)
        number("flow_time", self.flow_time, lo=0)
        number("flow_step", self.flow_step, lo=0, lo_open=True)
        number("reference_flow_time", self.reference_flow_time, lo=self.flow_time, lo_open=True)
        numbers("series_taus", self.series_taus, lo=0, lo_open=True)

    @classmethod
    def for_scale(cls, scale: str) -> SlowFlowConfig:
        """``smoke``: 3 η and 3 S on the smoke network, one seed (under a minute).
        ``small``: the negative-eigenvalue chapter's 9 runs (𝒞 from 2.5e-4 to 2.5e-3),
        4 replicas, 3 seeds.  ``paper``: the paper's network (it must interpolate), η from
        0.002 to 0.1 and S from 5 to 250."""
        floor = FloorConfig.for_scale
        return by_scale(
            scale,
            smoke=cls(
                floor=floor("smoke"), etas=(0.025, 0.05, 0.1), batch_sizes=(5, 10, 20),
                eta0=0.05, batch_size0=10, tau_window=20, points=1, replicas=2, seeds=1,
                series_taus=(1.0, 10.0), series_replicas=2, flow_time=30.0,
                reference_flow_time=100.0, resolution_bound=2.0,
            ),
            small=cls(
                floor=floor("small"), etas=(0.01, 0.02, 0.025, 0.05, 0.1),
                batch_sizes=(5, 10, 20, 25, 50), eta0=0.05, batch_size0=10, tau_window=40,
                points=2, replicas=4, seeds=3,
            ),
            paper=cls(
                floor=floor("paper"), etas=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1),
                batch_sizes=(5, 10, 20, 50, 100, 250), eta0=0.01, batch_size0=50,
                tau_window=40, points=4, replicas=8, seeds=1,
            ),
        )  # fmt: skip

    @property
    def runs(self) -> list[tuple[float, int]]:
        """Every distinct (η, S): the η sweep, then the rest of the S sweep."""
        return sweep_design.pairs(self)

    def noise_scale(self, eta: float, batch_size: int) -> float:
        """𝒞 = ηκ/4 with κ = 1/S, exact for sampled labels at an interpolating floor."""
        return eta / (4 * batch_size)

    @property
    def taus(self) -> tuple[float, ...]:
        """The times of the maps onto the floor, in SGD time τ = ηt."""
        return tuple(self.tau_window * (k + 1) / self.points for k in range(self.points))


# --------------------------------------------------------------------------------------------
# The prediction: the exact gradient of tr H on the floor
# --------------------------------------------------------------------------------------------
@dataclass
class Prediction:
    r"""What the slow flow predicts at the floor point θ* ``(P,)``.

    ``grad_trace`` ``(P,)`` is ∇tr H(θ*), exact (third derivative, P probes; it took
    ``seconds`` of CPU time on one thread); ``tangent_grad`` its projection P_Γ∇tr H onto
    ker H(θ*).  ``lam`` ``(n,)`` are the non-degenerate eigenvalues (the floor's normal
    dimension n = M(K − 1)), ``normal_components`` ``(n,)`` the components v_jᵀ∇tr H along
    their eigenvectors, ``eig_grads`` ``(n, P)`` the tangential gradients P_Γ∇λ_j and
    ``eig_normal`` ``(n,)`` the norms of their normal parts ‖(I − P_Γ)∇λ_j‖ (how fast a normal
    displacement changes λ_j).  ``sum_relerr`` compares Σ_j P_Γ∇λ_j with P_Γ∇tr H, two
    computations of the same vector from different probes.
    """

    theta: Tensor
    trace: float
    lam: Tensor
    grad_trace: Tensor
    tangent_grad: Tensor
    normal_components: Tensor
    eig_grads: Tensor
    eig_normal: Tensor
    seconds: float

    @property
    def grad_sq(self) -> float:
        """‖P_Γ∇tr H‖²."""
        return (self.tangent_grad @ self.tangent_grad).item()

    @property
    def normal_grad_sq(self) -> float:
        """The normal part of ‖∇tr H‖²: what the floor's constraint removes."""
        return (self.normal_components @ self.normal_components).item()

    @property
    def shares(self) -> np.ndarray:
        """s_j = P_Γ∇λ_j · P_Γ∇tr H / ‖P_Γ∇tr H‖², ``(n,)``: each direction's share of the
        predicted drift (they sum to 1)."""
        return (self.eig_grads @ self.tangent_grad).cpu().numpy() / self.grad_sq

    @property
    def sum_relerr(self) -> float:
        """|Σ_j P_Γ∇λ_j − P_Γ∇tr H| / |P_Γ∇tr H|."""
        diff = self.eig_grads.sum(0) - self.tangent_grad
        return (diff.norm() / self.tangent_grad.norm()).item()

    def factor(self, eta: float) -> float:
        """Σ_j s_j·2/(2 − ηλ_j): the finite-η rate over the leading-order one."""
        lam = self.lam.cpu().numpy()
        return float((self.shares * 2 / (2 - eta * lam)).sum())

    def rate(self, eta: float, batch_size: int, *, finite: bool = True) -> float:
        """d tr H(Φ)/dτ: −𝒞‖P_Γ∇tr H‖², times :meth:`factor` when ``finite``."""
        lead = -eta / (4 * batch_size) * self.grad_sq
        return lead * self.factor(eta) if finite else lead

    def regularizer_grad(self, eta: float) -> Tensor:
        """P_Γ∇R_η ``(P,)`` with R_η = −(1/2η)Σ log(1 − ηλ_j/2): Σ_j P_Γ∇λ_j/(2(2 − ηλ_j))."""
        w = 1 / (2 * (2 - eta * self.lam))
        return w @ self.eig_grads

    def share_below(self, cut: float) -> float:
        """The share of the predicted drift from directions with λ_j < ``cut``."""
        return float(self.shares[self.lam.cpu().numpy() < cut].sum())

    def cut_change(self, cut: float) -> float:
        """How much ‖P_Γ∇tr H‖² would grow, relatively, if the directions with λ_j < ``cut``
        were counted as tangent (a cut placed inside the non-degenerate spectrum)."""
        below = self.normal_components[self.lam < cut]
        return (below @ below).item() / self.grad_sq

    def gn_excess(self, eta: float, batch_size: int, taus: np.ndarray) -> np.ndarray:
        r"""The predicted E[tr H(Φ_GN(θ_τ))] − E[tr H(Φ(θ_τ))] at the SGD times ``taus``: the
        Gauss–Newton map's second-order term is twice the limit map's, so the difference is
        ∇tr H · ½∂²Φ[X(τ)] = −Σ_j X_j(τ) s_j ‖P_Γ∇tr H‖²/(4λ_j), with X_j(τ) the variance of
        the normal coordinate j after t = τ/η steps from the floor,
        ηκ(1 − (1 − ηλ_j)^{2t})/(2 − ηλ_j) (κ = 1/S)."""
        lam = self.lam.cpu().numpy()[:, None]
        steps = np.asarray(taus, dtype=np.float64)[None, :] / eta
        x = eta / batch_size * (1 - (1 - eta * lam) ** (2 * steps)) / (2 - eta * lam)
        return -(x * self.shares[:, None] / (4 * lam)).sum(0) * self.grad_sq


def predict(problem: Problem, theta: Tensor) -> Prediction:
    """The :class:`Prediction` at the floor point ``theta`` (landed on first, so that θ*
    interpolates to :data:`~hessnoise.experiments.slow_flow_floor.RESIDUAL_TOL`)."""
    with threads("small"):
        frame = landing(problem)(theta)
        start = time.process_time()  # CPU time: robust to a busy machine
        g = projection.trace_gradient(problem.loss, frame.theta)
        seconds = time.process_time() - start
        probes = frame.normal.T.contiguous()
        eig = projection.quadratic_form_gradients(problem.loss, frame.theta, probes)
    return Prediction(
        theta=frame.theta,
        trace=frame.lam.sum().item(),
        lam=frame.lam,
        grad_trace=g,
        tangent_grad=frame.tangent(g),
        normal_components=frame.coords(g),
        eig_grads=frame.tangent(eig),
        eig_normal=frame.coords(eig).norm(dim=1),
        seconds=seconds,
    )


def trace_fd_relerr(
    problem: Problem, pred: Prediction, direction: Tensor, h: float = 1e-3
) -> float:
    """|central difference of tr H along the unit ``direction`` − ∇tr H·direction|, relative:
    an independent check of the exact third-derivative contraction (dense float64 Hessians;
    error O(h²))."""
    u = direction / direction.norm()
    plus = torch.trace(problem.hessian(pred.theta + h * u)).item()
    minus = torch.trace(problem.hessian(pred.theta - h * u)).item()
    exact = (pred.grad_trace @ u).item()
    return abs((plus - minus) / (2 * h) - exact) / abs(exact)


def label_noise_relerr(problem: Problem, theta: Tensor) -> float:
    """max|S·C − H| / max|H| at a floor point, with C the exact covariance of the
    sampled-label mini-batch gradient (S distinct samples, a label c_k ~ q_k for each):
    S·C = (1/M)Σ_k Σ_c q_kc ∇ℓ_kc∇ℓ_kcᵀ wherever every ∇ℓ_k(θ) = Σ_c q_kc∇ℓ_kc vanishes, and
    H the dense Hessian (an independent computation)."""
    g = problem.class_gradients(theta)  # (M, K, P)
    sc = torch.einsum("mk,mkp,mkq->pq", problem.q, g, g) / problem.n_samples
    h = problem.hessian(theta)
    return ((sc - h).abs().max() / h.abs().max()).item()


@dataclass(frozen=True)
class InstrumentChecks:
    """The checks of the instrument at one floor: ``fd_tangent`` and ``fd_random``, the
    relative error of ∇tr H against central differences of dense traces along P_Γ∇tr H and
    along a random direction; ``frame`` = max|λ_j(Gauss–Newton root) − λ_j(dense)|/λ_max;
    ``label_noise``, :func:`label_noise_relerr`; ``sum_relerr``, see :class:`Prediction`."""

    fd_tangent: float
    fd_random: float
    frame: float
    label_noise: float
    sum_relerr: float


def instrument_checks(
    problem: Problem, floor: Floor, pred: Prediction, seed: int
) -> InstrumentChecks:
    """:class:`InstrumentChecks` at the floor of ``floor`` (a
    :class:`~hessnoise.experiments.floor.Floor`), random direction drawn from ``seed``."""
    gen = torch.Generator(device=pred.theta.device).manual_seed(seed)
    u = torch.randn(pred.theta.shape, generator=gen, dtype=pred.theta.dtype,
                    device=pred.theta.device)  # fmt: skip
    dense = floor.eigenvalues[-pred.lam.numel() :].to(pred.lam)
    return InstrumentChecks(
        fd_tangent=trace_fd_relerr(problem, pred, pred.tangent_grad),
        fd_random=trace_fd_relerr(problem, pred, u),
        frame=((pred.lam - dense).abs().max() / dense.max()).item(),
        label_noise=label_noise_relerr(problem, pred.theta),
        sum_relerr=pred.sum_relerr,
    )


@dataclass
class SeedSetup:
    """One seed's network and data (``problem``), its floor (``floor``, from the cache that the
    negative-eigenvalue chapter fills) and the :class:`Prediction` there (``pred``)."""

    seed: int
    problem: Problem
    floor: Floor
    pred: Prediction


def prepare(cfg: SlowFlowConfig, seed: int, device: torch.device | str,
            floor_dir: str | Path | None = None) -> SeedSetup:  # fmt: skip
    """Set up one seed: its data subset and initialization, its floor (cached in
    ``floor_dir``), and the prediction at the floor."""
    problem = setup(cfg.floor, seed, device)
    floor = find_floor(problem, cfg.floor, seed, floor_dir)
    return SeedSetup(seed, problem, floor, predict(problem, floor.theta))


def prediction_facts(pred: Prediction, cfg: SlowFlowConfig) -> dict[str, float | int]:
    """The numbers the chapter states about the prediction at one floor, for
    ``Chapter.record``: ‖P_Γ∇tr H‖² and the normal part of ‖∇tr H‖², the cost of the exact
    gradient, the finite-η factors at η₀ and at the largest η, the shares of the drift from
    the directions with λ > 1 (``n_top`` of them), from those slower than the window and than
    the flow, the change of ‖P_Γ∇tr H‖² for cuts at 1e-5 and 1e-4, the cosine between
    P_Γ∇tr H and P_Γ∇R_η at the largest η, the median of ‖(I − P_Γ)∇λ_j‖/λ_j over the
    directions with λ_j > 0.1 and with λ_j < 1e-3, and √(2𝒞_max) times the former."""
    reg = pred.regularizer_grad(max(cfg.etas))
    lam = pred.lam.cpu().numpy()
    log_grad = pred.eig_normal.cpu().numpy() / lam  # ‖(I − P_Γ)∇λ_j‖/λ_j
    stiff = float(np.median(log_grad[lam > 0.1]))
    c_max = max(cfg.noise_scale(e, s) for e, s in cfg.runs)
    return {
        "grad_sq": pred.grad_sq,
        "normal_grad_sq": pred.normal_grad_sq,
        "seconds": pred.seconds,
        "factor_eta0": pred.factor(cfg.eta0),
        "factor_eta_max": pred.factor(max(cfg.etas)),
        "n_top": int((pred.lam > 1).sum()),
        "share_top": 1 - pred.share_below(1.0),
        "share_window": pred.share_below(1 / (2 * cfg.tau_window)),
        "share_flow": pred.share_below(5 / cfg.flow_time),
        "cut_1e5": pred.cut_change(1e-5),
        "cut_1e4": pred.cut_change(1e-4),
        "cos_regularizer": float(
            (pred.tangent_grad @ reg) / (pred.tangent_grad.norm() * reg.norm())
        ),
        "log_grad_stiff": stiff,
        "log_grad_soft": float(np.median(log_grad[lam < 1e-3])),
        "expansion_stiff": math.sqrt(2 * c_max) * stiff,
    }
