"""One SGD run of Fig. 2(a) at the floor of the Section 4.1 network, from plan to result.

What a run does is fixed before it starts (:class:`RunPlan`, :func:`plan_run`): its protocol,
η and S, its windows in steps, its start, generator seed and checkpoint.  While it runs it records
the excess loss and, at the end of each block, an exact float64 spectrum (:func:`snapshot`) and
both sides of the fluctuation–dissipation relation (:func:`noise_power`); :func:`run_sgd` runs it
with :func:`hessnoise.train.sgd` (checkpointed, resumable) and returns a :class:`RunResult`.
The sweeps that combine runs are in :mod:`hessnoise.experiments.negative_eigenvalues`; the runs
advanced together on a device in :mod:`hessnoise.experiments.floor_sgd_batched`.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from hessnoise import checkpoints, train
from hessnoise._validate import choice
from hessnoise.curvature import Spectrum
from hessnoise.experiments.floor import DTYPE, Floor, FloorConfig, Problem
from hessnoise.losses import cross_entropy
from hessnoise.stats import Estimate, mean_se
from hessnoise.threads import threads

if TYPE_CHECKING:
    from hessnoise.experiments.negative_eigenvalues import NegativeEigenvaluesConfig

PROTOCOLS = ("minibatch", "sampled-labels")
# Σλ₋ is recorded at these multiples of Spectrum.zero_tol, to show how much the threshold matters.
TOL_FACTORS = (1.0, 1e3, 1e6)
# Part of every run checkpoint's fingerprint: bump it when what a checkpoint holds changes.
CHECKPOINT_VERSION = 3


def draw_minibatch(problem: Problem, batch_size: int, protocol: str, *, onehot: bool = False):
    """``draw(generator) → (x_B, t_B)``: S distinct samples; targets q (``'minibatch'``) or
    labels drawn from q (``'sampled-labels'``), as class indices or, with ``onehot``, as
    one-hot rows ``(S, K)`` (the same draws; the form that stacks with q's rows)."""
    m, dev = problem.n_samples, problem.device

    def draw(gen: torch.Generator) -> tuple[Tensor, Tensor]:
        idx = torch.randperm(m, generator=gen, device=dev)[:batch_size]
        if protocol == "minibatch":
            return problem.x[idx], problem.q[idx]
        labels = torch.multinomial(problem.q[idx], 1, generator=gen).squeeze(1)
        if onehot:
            return problem.x[idx], F.one_hot(labels, problem.q.shape[1]).to(problem.q.dtype)
        return problem.x[idx], labels

    return draw


def noise_power(
    problem: Problem, theta: Tensor, basis: Tensor, batch_size: int, protocol: str
) -> tuple[Tensor, float]:
    r"""Vᵀ∇L(θ) ``(n,)`` and the exact batch average E_B‖Vᵀg_B‖² of the protocol's mini-batch
    gradient g_B at θ, projected on the columns of ``basis`` V ``(P, n)``.

    With a_k the gradient of sample k at targets q and ā their mean (= ∇L), S distinct samples
    out of M give the sampling variance (M − S)/(S(M − 1))·mean_k‖Vᵀ(a_k − ā)‖²; labels drawn
    from q add mean_k Σ_c q_kc‖Vᵀ(∇ℓ_kc − a_k)‖²/S.
    """
    gv = problem.class_gradients(theta) @ basis  # (M, K, n)
    a = (problem.q.unsqueeze(-1) * gv).sum(1)  # (M, n)
    abar = a.mean(0)
    m, s = problem.n_samples, batch_size
    power = abar @ abar + (m - s) / (s * (m - 1)) * ((a - abar) ** 2).sum(1).mean()
    if protocol == "sampled-labels":
        power = power + (problem.q * ((gv - a.unsqueeze(1)) ** 2).sum(-1)).sum(1).mean() / s
    return abar, power.item()


def snapshot(problem: Problem, theta: Tensor) -> dict[str, Any]:
    """Exact spectrum at θ: Σλ₋ at each of :data:`TOL_FACTORS` × zero_tol, the count of
    negative eigenvalues, the trace, the smallest eigenvalue, and all eigenvalues (CPU)."""
    return summary(problem.spectrum(theta))


def snapshots(problem: Problem, thetas: Tensor) -> list[dict[str, Any]]:
    """:func:`snapshot` at each row of ``thetas`` ``(k, P)``, the eigensolves batched."""
    return [summary(sp) for sp in problem.spectra(thetas)]


def summary(sp: Spectrum) -> dict[str, Any]:
    """What a snapshot records of a spectrum (see :func:`snapshot`)."""
    return {
        "sum_neg": [sp.sum_negative(f * sp.zero_tol) for f in TOL_FACTORS],
        "n_neg": sp.n_negative(),
        "trace": sp.trace,
        "lam_min": sp.eigenvalues[0].item(),
        "eigenvalues": sp.eigenvalues,
    }


@dataclass
class RunResult:
    """One SGD run: per measurement block, the time-averaged excess loss and the spectrum at
    the block's end.  ``sum_neg`` is ``(snapshots, len(TOL_FACTORS))``; the rest
    ``(snapshots,)``; ``C`` is Appendix A.3's 𝒞 = ηκ/4.  ``end_floor_trace`` is the trace of
    the Hessian at the floor point below the run's final state (:func:`project_to_floor`):
    how far SGD has moved along the valley.  ``fdr_lhs`` and ``fdr_rhs`` ``(snapshots,)`` are
    the two sides of the fluctuation–dissipation relation at each snapshot,
    (θ − θ*)ᵀVVᵀ∇L and (η/2)E_B‖Vᵀg_B‖²."""

    protocol: str
    eta: float
    batch_size: int
    kappa: float
    C: float
    steps: int
    block_excess: Tensor
    sum_neg: Tensor
    n_neg: Tensor
    trace: Tensor
    lam_min: Tensor
    last_eigenvalues: Tensor
    fdr_lhs: Tensor
    fdr_rhs: Tensor
    end_floor_trace: float = float("nan")
    resumed_from: int = 0

    @property
    def fdr_gap(self) -> Estimate:
        """⟨lhs − rhs⟩/⟨rhs⟩ of the fluctuation–dissipation relation, with its standard error
        over snapshots: zero in a stationary state, negative while the non-degenerate
        coordinates are still spreading (or the valley turns under them)."""
        d = mean_se((self.fdr_lhs - self.fdr_rhs).numpy())
        scale = self.fdr_rhs.mean().item()
        return Estimate(d.value / scale, d.se / scale, d.n)

    @property
    def trace_drift(self) -> float:
        """Relative change of the Hessian trace over the measurement window: the mean over its
        last fifth of snapshots against the mean over its first fifth."""
        k = max(1, self.trace.numel() // 5)
        return (self.trace[-k:].mean() / self.trace[:k].mean() - 1).item()

    @property
    def excess(self) -> float:
        """⟨L⟩ − L* over the measurement window."""
        return self.block_excess.mean().item()

    @property
    def excess_se(self) -> float:
        """Standard error of ⟨L⟩ − L* from the block means."""
        return (self.block_excess.std() / math.sqrt(self.block_excess.numel())).item()

    @property
    def excess_a3(self) -> float:
        """A.3's ⟨L⟩ − L* = 𝒞·Σλ_i with the trace of the Hessians at the snapshots (where in
        the valley the run is, which SGD's drift moves during the window)."""
        return self.C * self.trace.mean().item()

    @property
    def sum_negative(self) -> float:
        """⟨Σλ₋⟩ over the snapshots (threshold: zero_tol)."""
        return self.sum_neg[:, 0].mean().item()

    @property
    def sum_negative_se(self) -> float:
        """Standard error of ⟨Σλ₋⟩, treating snapshots as independent."""
        y = self.sum_neg[:, 0]
        return (y.std() / math.sqrt(y.numel())).item()


def project_to_floor(problem: Problem, theta: Tensor, cfg: FloorConfig) -> tuple[Tensor, float]:
    """The floor point below θ, by Gauss–Newton from θ (the nearest minimum to first order:
    the steps are orthogonal to the floor's null space), and the trace of its Hessian."""
    fit = train.gauss_newton(
        problem.outputs, cross_entropy, problem.q, theta,
        max_iter=cfg.floor_iter, grad_tol=cfg.floor_tol,
    )  # fmt: skip
    return fit.theta, torch.trace(problem.hessian(fit.theta)).item()


def schedule(tau_equil: float, tau_measure: float, eta: float, snapshots: int, loss_points: int):
    """Steps of the equilibration window, of one block, and between loss evaluations, for
    windows given in SGD time τ = η·t; all rounded so that blocks hold whole loss intervals."""
    block = math.ceil(tau_measure / (eta * snapshots))
    every = max(1, block // loss_points)
    block = math.ceil(block / every) * every
    equil = math.ceil(math.ceil(tau_equil / eta) / every) * every
    return equil, block, every


@dataclass(frozen=True)
class RunPlan:
    """What one run does: protocol, η, S; its windows in steps (equilibration ``equil``,
    blocks of ``block`` steps ending in a snapshot, the loss every ``every`` steps),
    ``steps`` in all; its start θ ``(P,)``, generator seed, checkpoint and fingerprint."""

    protocol: str
    eta: float
    batch_size: int
    equil: int
    block: int
    every: int
    snapshots: int
    steps: int
    start: Tensor
    seed: int
    checkpoint: Path | None
    fingerprint: str


def plan_run(
    floor: Floor,
    cfg: NegativeEigenvaluesConfig,
    protocol: str,
    eta: float,
    batch_size: int,
    seed: int,
    *,
    tau: tuple[float, float] | None = None,
    snapshots: int | None = None,
    checkpoint_dir: str | Path | None = None,
) -> RunPlan:
    """The :class:`RunPlan` of :func:`run_sgd` at (η, S): the start is θ* for sampled labels
    and ``floor.theta_start`` for the paper's protocol; windows ``tau`` and ``snapshots``
    default to the config's."""
    choice("protocol", protocol, PROTOCOLS)
    tau_equil, tau_measure = tau or (cfg.tau_equil, cfg.tau_measure)
    snapshots = snapshots or cfg.snapshots
    equil, block, every = schedule(tau_equil, tau_measure, eta, snapshots, cfg.loss_points)
    start = floor.theta if protocol == "sampled-labels" else floor.theta_start
    path = None
    if checkpoint_dir is not None:
        path = Path(checkpoint_dir) / f"{protocol}_eta{eta:g}_S{batch_size}.pt"
    key = checkpoints.fingerprint(
        CHECKPOINT_VERSION, TOL_FACTORS, asdict(cfg), seed, protocol, eta, batch_size,
        tau_equil, tau_measure, snapshots, checkpoints.tensor_hash(start),
    )  # fmt: skip
    return RunPlan(
        protocol=protocol, eta=eta, batch_size=batch_size, equil=equil, block=block,
        every=every, snapshots=snapshots, steps=equil + snapshots * block, start=start,
        seed=zlib.crc32(f"{seed}/{protocol}/{eta!r}/{batch_size}".encode()), checkpoint=path,
        fingerprint=key,
    )  # fmt: skip


def fdr_sides(problem: Problem, floor: Floor, plan: RunPlan, theta: Tensor) -> dict[str, float]:
    grad, power = noise_power(problem, theta, floor.basis, plan.batch_size, plan.protocol)
    return {
        "fdr_lhs": ((theta - floor.theta) @ floor.basis @ grad).item(),
        "fdr_rhs": plan.eta / 2 * power,
    }


def _record(
    problem: Problem, floor: Floor, plan: RunPlan, step: int, theta: Tensor
) -> dict[str, Any] | None:
    """What a run records after ``step``: nothing while it equilibrates, then the excess loss,
    and at the end of each block the snapshot and the two sides of the FDR."""
    if step <= plan.equil:
        return None
    rec: dict[str, Any] = {"excess": problem.loss_value(theta) - floor.loss}
    if (step - plan.equil) % plan.block == 0:
        rec.update(snapshot(problem, theta))
        rec.update(fdr_sides(problem, floor, plan, theta))
    return rec


def run_result(
    problem: Problem, floor: Floor, cfg: NegativeEigenvaluesConfig, plan: RunPlan, res: Any
) -> RunResult:
    """A run's :class:`RunResult` from its SGD records."""
    excess = torch.zeros(plan.snapshots, dtype=DTYPE)
    counts = torch.zeros(plan.snapshots, dtype=DTYPE)
    snaps = [r for r in res.records if "sum_neg" in r]
    for r in res.records:
        j = (r["step"] - plan.equil - 1) // plan.block
        excess[j] += r["excess"]
        counts[j] += 1
    kappa = cfg.kappa(plan.protocol, plan.batch_size)
    return RunResult(
        protocol=plan.protocol,
        eta=plan.eta,
        batch_size=plan.batch_size,
        kappa=kappa,
        C=plan.eta * kappa / 4,
        steps=plan.steps,
        block_excess=excess / counts,
        sum_neg=torch.tensor([r["sum_neg"] for r in snaps], dtype=DTYPE),
        n_neg=torch.tensor([r["n_neg"] for r in snaps]),
        trace=torch.tensor([r["trace"] for r in snaps], dtype=DTYPE),
        lam_min=torch.tensor([r["lam_min"] for r in snaps], dtype=DTYPE),
        last_eigenvalues=snaps[-1]["eigenvalues"],
        fdr_lhs=torch.tensor([r["fdr_lhs"] for r in snaps], dtype=DTYPE),
        fdr_rhs=torch.tensor([r["fdr_rhs"] for r in snaps], dtype=DTYPE),
        end_floor_trace=(
            project_to_floor(problem, res.theta, cfg.floor)[1]
            if plan.protocol == "sampled-labels"
            else float("nan")
        ),
        resumed_from=res.resumed_from,
    )


def run_sgd(
    problem: Problem,
    floor: Floor,
    cfg: NegativeEigenvaluesConfig,
    protocol: str,
    eta: float,
    batch_size: int,
    seed: int,
    *,
    tau: tuple[float, float] | None = None,
    snapshots: int | None = None,
    checkpoint_dir: str | Path | None = None,
) -> RunResult:
    """SGD at (η, S) from the floor (θ* for sampled labels, ``floor.theta_start`` for the
    paper's protocol): equilibrate for τ_equil, then measure for τ_measure in ``snapshots``
    blocks.  Checkpointed in ``checkpoint_dir`` (resumes after a kill)."""
    plan = plan_run(floor, cfg, protocol, eta, batch_size, seed, tau=tau, snapshots=snapshots,
                    checkpoint_dir=checkpoint_dir)  # fmt: skip
    return run_plan(problem, floor, cfg, plan)


def run_plan(
    problem: Problem, floor: Floor, cfg: NegativeEigenvaluesConfig, plan: RunPlan
) -> RunResult:
    def callback(step: int, theta: Tensor) -> dict[str, Any] | None:
        return _record(problem, floor, plan, step, theta)

    def batch_loss(theta: Tensor, xb: Tensor, tb: Tensor) -> Tensor:
        return cross_entropy(problem.net(theta, xb), tb)

    with threads("small"):
        res = train.sgd(
            batch_loss, plan.start, draw_minibatch(problem, plan.batch_size, plan.protocol),
            lr=plan.eta,
            steps=plan.steps, seed=plan.seed, callback=callback, every=plan.every,
            checkpoint=plan.checkpoint, checkpoint_every=cfg.checkpoint_every,
            fingerprint=plan.fingerprint,
        )  # fmt: skip
    return run_result(problem, floor, cfg, plan, res)
