r"""The SGD runs of Fig. 2(a): negative eigenvalues and the training loss (Section 4.1, App. A.3).

Appendix A.3 predicts that, in the stationary state of SGD near a minimal valley, the excess
loss and the curvature along the valley floor are both proportional to 𝒞 = ηκ/4
(κ = (1/S)(1 − S/M) for SGD).  This module produces the runs that test it, from the floor of
:mod:`hessnoise.experiments.floor`:

* :func:`sweep`: an η sweep at fixed S and an S sweep at fixed η that share their centre, each
  run (:func:`run_sgd`) with an equilibration window and exact float64 spectra at evenly spaced
  snapshots; each run is checkpointed, so a killed sweep resumes.
* Two noises: the paper's mini-batches of fixed smoothed targets (``'minibatch'``), and
  mini-batches whose labels are drawn from q (``'sampled-labels'``), an unbiased gradient of
  the same loss whose noise at an interpolating floor is exactly H/S.
* At every snapshot, both sides of the fluctuation–dissipation relation for
  O = ½‖Vᵀ(θ − θ*)‖² (V: the floor's non-degenerate eigenvectors), with the batch average
  computed exactly (:func:`noise_power`): a diagnostic of whether the non-degenerate
  coordinates are stationary, as A.3 assumes.
* :func:`run_seed` does all of it for one seed: its own data subset, initialization and floor.

The fits are in :mod:`hessnoise.experiments.a3_fits`, the curved-floor probe in
:mod:`hessnoise.experiments.curved_floor`.

On CUDA everything (data, network, generator, Hessians, eigensolves) stays on the device; the
host sees a scalar per loss evaluation and the eigenvalues of each snapshot.
"""

from __future__ import annotations

import copy
import math
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from hessnoise import checkpoints, train
from hessnoise._validate import choice, number
from hessnoise.curvature import Spectrum
from hessnoise.experiments.floor import DTYPE, Floor, FloorConfig, Problem, find_floor, setup
from hessnoise.losses import cross_entropy
from hessnoise.params import FlatNet
from hessnoise.progress import progress, timed
from hessnoise.scales import by_scale
from hessnoise.stats import Estimate, mean_se
from hessnoise.threads import threads

PROTOCOLS = ("minibatch", "sampled-labels")
# Σλ₋ is recorded at these multiples of Spectrum.zero_tol, to show how much the threshold matters.
TOL_FACTORS = (1.0, 1e3, 1e6)
PAPER_SLOPE = -40.07  # Fig. 2(a): y = wx + b with w = −40.07, b = −1.22e−5
PAPER_INTERCEPT = -1.22e-5
# Part of every run checkpoint's fingerprint: bump it when what a checkpoint holds changes.
CHECKPOINT_VERSION = 3


@dataclass(frozen=True)
class NegativeEigenvaluesConfig:
    """Sizes of the chapter's experiment.

    The η sweep runs ``etas`` at batch size ``batch_size0``; the S sweep runs ``batch_sizes``
    at ``eta0``; their shared centre is (``eta0``, ``batch_size0``).  Windows are in SGD time
    τ = η·t, the same for every run, so that runs differ only in the noise scale 𝒞 = ηκ/4 and
    not in how far the slow directions have relaxed.  The measurement window is cut into
    ``snapshots`` blocks, each ending with an exact spectrum, and the loss is evaluated
    ``loss_points`` times per block.  ``minibatch_*`` are the windows of the paper's protocol.
    """

    floor: FloorConfig
    etas: tuple[float, ...]
    batch_sizes: tuple[int, ...]
    eta0: float
    batch_size0: int
    tau_equil: float
    tau_measure: float
    snapshots: int
    minibatch_tau: tuple[float, float]
    minibatch_snapshots: int
    seeds: int = 3
    loss_points: int = 10
    bootstrap: int = 2000
    resolution_bound: float = 0.5
    checkpoint_every: int = 5000

    def __post_init__(self) -> None:
        for name in ("etas", "batch_sizes"):
            values = getattr(self, name)
            if len(set(values)) < 3:
                raise ValueError(f"{name}={values!r} must hold at least 3 distinct values")
        choice("eta0", self.eta0, self.etas)
        choice("batch_size0", self.batch_size0, self.batch_sizes)
        number("max(batch_sizes)", max(self.batch_sizes), hi=self.floor.n)

    @classmethod
    def for_scale(cls, scale: str) -> NegativeEigenvaluesConfig:
        """``smoke`` and ``small``: Fashion-MNIST at 7×7 (see :class:`FloorConfig`).
        ``paper``: Section 4.1, η from 0.002 to 0.1 and S from 5 to 250."""
        floor = FloorConfig.for_scale
        return by_scale(
            scale,
            smoke=cls(
                floor=floor("smoke"), etas=(0.025, 0.05, 0.1), batch_sizes=(5, 10, 20), eta0=0.05,
                batch_size0=10, tau_equil=40, tau_measure=48, snapshots=10, seeds=2,
                minibatch_tau=(5, 5), minibatch_snapshots=1, bootstrap=500, resolution_bound=4.0,
            ),
            small=cls(
                floor=floor("small"), etas=(0.01, 0.02, 0.025, 0.05, 0.1),
                batch_sizes=(5, 10, 20, 25, 50), eta0=0.05, batch_size0=10, tau_equil=100,
                tau_measure=160, snapshots=60, minibatch_tau=(10, 10), minibatch_snapshots=1,
                resolution_bound=0.75,
            ),
            paper=cls(
                floor=floor("paper"), etas=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1),
                batch_sizes=(5, 10, 20, 50, 100, 250), eta0=0.01, batch_size0=50,
                tau_equil=100, tau_measure=100, snapshots=40, seeds=1,
                minibatch_tau=(100, 100), minibatch_snapshots=20,
            ),
        )  # fmt: skip

    def kappa(self, protocol: str, batch_size: int) -> float:
        """κ of the noise at the floor: (1/S)(1 − S/M) for mini-batches (Hoffer et al., the
        paper's eq. 10), 1/S for sampled labels (exact at an interpolating floor)."""
        if protocol == "minibatch":
            return (1 - batch_size / self.floor.n) / batch_size
        return 1 / batch_size

    def c_a3(self, protocol: str, eta: float, batch_size: int) -> float:
        """Appendix A.3's 𝒞 = ηκ/4."""
        return eta * self.kappa(protocol, batch_size) / 4


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


def _fdr(problem: Problem, floor: Floor, plan: RunPlan, theta: Tensor) -> dict[str, float]:
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
        rec.update(_fdr(problem, floor, plan, theta))
    return rec


def _records(
    problem: Problem,
    floor: Floor,
    plans: list[RunPlan],
    steps: list[int],
    thetas: Tensor,
    pool: tuple[ThreadPoolExecutor, Problem] | None = None,
) -> list[Any]:
    """:func:`_record` for several runs at once, their eigensolves batched; with ``pool`` (a
    thread and the problem it may use), the snapshots are handed to that thread and their
    records come back as futures."""
    out: list[Any] = [None] * len(plans)
    live = [i for i, (p, t) in enumerate(zip(plans, steps, strict=True)) if t > p.equil]
    if not live:
        return out
    with torch.no_grad():  # one transfer to the host for all the losses
        losses = torch.stack([problem.loss(thetas[i]) for i in live]).tolist()
    for i, loss in zip(live, losses, strict=True):
        out[i] = {"excess": loss - floor.loss}
    ends = [i for i in live if (steps[i] - plans[i].equil) % plans[i].block == 0]
    if not ends:
        return out
    at = thetas[ends]  # a copy: the steps go on while a pool works on it
    base = [out[i] for i in ends]
    where = problem if pool is None else pool[1]

    def complete() -> list[dict[str, Any]]:
        return [
            {**rec, **snap, **_fdr(where, floor, plans[i], theta)}
            for i, rec, snap, theta in zip(ends, base, snapshots(where, at), at, strict=True)
        ]

    if pool is None:
        for i, rec in zip(ends, complete(), strict=True):
            out[i] = rec
        return out
    futures = [Future() for _ in ends]

    def work() -> None:
        try:
            for future, rec in zip(futures, complete(), strict=True):
                future.set_result(rec)
        except BaseException as err:  # handed to the thread that waits for the records
            for future in futures:
                if not future.done():
                    future.set_exception(err)

    pool[0].submit(work)
    for i, future in zip(ends, futures, strict=True):
        out[i] = future
    return out


def _result(
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
    return _run_planned(problem, floor, cfg, plan)


def _run_planned(
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
    return _result(problem, floor, cfg, plan, res)


def run_batched(
    problem: Problem,
    floor: Floor,
    cfg: NegativeEigenvaluesConfig,
    plans: list[RunPlan],
    *,
    overlap: bool | None = None,
) -> list[RunResult]:
    """The runs of ``plans`` advanced together (:func:`hessnoise.train.sgd_batched`): each
    draws its own batches from its own generator, as :func:`run_sgd` does, so it gives
    :func:`run_sgd`'s result up to rounding; snapshots that fall on the same step are
    eigensolved in one batch.  Each run keeps its own checkpoint, in :func:`run_sgd`'s
    format.

    With ``overlap`` (default: on a GPU) a second thread computes the snapshots while the
    steps go on: the device's eigensolves then run while the host launches the next steps,
    which is what the steps of a small network cost.  The results are the same.
    """
    if overlap is None:
        overlap = problem.device.type == "cuda"

    def sample_loss(theta: Tensor, xb: Tensor, tb: Tensor) -> Tensor:
        return cross_entropy(problem.net(theta, xb), tb, reduction="none")

    # The second thread gets its own copy of the network: torch.func.functional_call swaps a
    # module's parameters while it runs, so two threads must never call the same module.
    pool = None
    if overlap:
        own = replace(problem, net=FlatNet(copy.deepcopy(problem.net.module)))
        pool = (ThreadPoolExecutor(max_workers=1, thread_name_prefix="snapshots"), own)

    def callback(ids: list[int], steps: list[int], thetas: Tensor) -> list[Any]:
        return _records(problem, floor, [plans[i] for i in ids], steps, thetas, pool)

    runs = [
        train.SGDRun(
            theta0=p.start,
            draw=draw_minibatch(problem, p.batch_size, p.protocol, onehot=True),
            lr=p.eta,
            steps=p.steps,
            seed=p.seed,
            every=p.every,
            checkpoint=p.checkpoint,
            fingerprint=p.fingerprint,
        )
        for p in plans
    ]
    try:
        with threads("small"):
            res = train.sgd_batched(
                sample_loss, runs, callback=callback, checkpoint_every=cfg.checkpoint_every
            )
    finally:
        if pool is not None:
            pool[0].shutdown(wait=True, cancel_futures=True)
    return [_result(problem, floor, cfg, p, r) for p, r in zip(plans, res, strict=True)]


def batched_by_default(device: torch.device | str) -> bool:
    """Whether :func:`sweep` and :func:`run_seed` advance their runs together unless told:
    on a GPU, where one run of a small network leaves the device idle."""
    return torch.device(device).type == "cuda"


@dataclass
class Sweep:
    """An η sweep at S = ``batch_size0`` and an S sweep at η = ``eta0``, sharing their centre
    run (the same object in both lists)."""

    protocol: str
    eta_sweep: list[RunResult]
    batch_sweep: list[RunResult]

    @property
    def runs(self) -> list[RunResult]:
        """Every distinct run, the centre once."""
        out: list[RunResult] = []
        for r in self.eta_sweep + self.batch_sweep:
            if all(r is not o for o in out):
                out.append(r)
        return out


def sweep_pairs(cfg: NegativeEigenvaluesConfig) -> list[tuple[float, int]]:
    """The distinct (η, S) of both sweeps: the η sweep, then the S sweep without the centre."""
    pairs = [(eta, cfg.batch_size0) for eta in sorted(cfg.etas)]
    return pairs + [(cfg.eta0, s) for s in sorted(cfg.batch_sizes) if s != cfg.batch_size0]


def _sweep_of(protocol: str, cfg: NegativeEigenvaluesConfig, done: dict) -> Sweep:
    eta_runs = [done[eta, cfg.batch_size0] for eta in sorted(cfg.etas)]
    batch_runs = [done[cfg.eta0, s] for s in sorted(cfg.batch_sizes)]
    return Sweep(protocol, eta_runs, batch_runs)


def _run_plans(
    problem: Problem,
    floor: Floor,
    cfg: NegativeEigenvaluesConfig,
    plans: list[RunPlan],
    batched: bool | None,
    desc: str = "runs",
) -> list[RunResult]:
    if batched is None:
        batched = batched_by_default(problem.device)
    if batched:
        with timed(f"{desc}: {len(plans)} runs batched"):
            return run_batched(problem, floor, cfg, plans)
    label = lambda p: f"{p.protocol}, eta={p.eta:g}, S={p.batch_size}"  # noqa: E731
    return [_run_planned(problem, floor, cfg, p) for p in progress(plans, desc=desc, label=label)]


def sweep(
    problem: Problem,
    floor: Floor,
    cfg: NegativeEigenvaluesConfig,
    protocol: str,
    seed: int,
    *,
    tau: tuple[float, float] | None = None,
    snapshots: int | None = None,
    checkpoint_dir: str | Path | None = None,
    batched: bool | None = None,
) -> Sweep:
    """Both sweeps of ``cfg`` for one protocol; finished runs are read from their checkpoints.

    With ``batched`` (default: :func:`batched_by_default` of the problem's device) the runs
    advance together (:func:`run_batched`), to the same results up to rounding.  Reports one
    progress line per finished run, or per batched sweep (:mod:`hessnoise.progress`)."""
    choice("protocol", protocol, PROTOCOLS)
    pairs = sweep_pairs(cfg)
    plans = [
        plan_run(floor, cfg, protocol, eta, s, seed, tau=tau, snapshots=snapshots,
                 checkpoint_dir=checkpoint_dir)
        for eta, s in pairs
    ]  # fmt: skip
    results = _run_plans(problem, floor, cfg, plans, batched, f"sweep {protocol}, seed {seed}")
    return _sweep_of(protocol, cfg, dict(zip(pairs, results, strict=True)))


@dataclass
class SeedResult:
    """Everything one seed produces: its network and floor, the paper's protocol and the
    sampled-label sweeps."""

    seed: int
    problem: Problem
    floor: Floor
    minibatch: Sweep
    sampled: Sweep


def run_seed(
    cfg: NegativeEigenvaluesConfig,
    seed: int,
    device: torch.device | str,
    floor_dir: str | Path | None = None,
    runs_dir: str | Path | None = None,
    *,
    batched: bool | None = None,
) -> SeedResult:
    """One seed's data subset, initialization and floor (cached in ``floor_dir``), and both
    protocols' sweeps (checkpointed in ``runs_dir``).  With ``batched`` (default:
    :func:`batched_by_default` of ``device``) all runs of both protocols advance together."""
    problem = setup(cfg.floor, seed, device)
    floor = find_floor(problem, cfg.floor, seed, floor_dir)
    pairs = sweep_pairs(cfg)
    windows = {
        "minibatch": (cfg.minibatch_tau, cfg.minibatch_snapshots),
        "sampled-labels": ((cfg.tau_equil, cfg.tau_measure), cfg.snapshots),
    }
    plans = [
        plan_run(floor, cfg, protocol, eta, s, seed, tau=tau, snapshots=snaps,
                 checkpoint_dir=runs_dir)
        for protocol, (tau, snaps) in windows.items()
        for eta, s in pairs
    ]  # fmt: skip
    results = _run_plans(problem, floor, cfg, plans, batched, f"seed {seed}")
    done = {(p.protocol, p.eta, p.batch_size): r for p, r in zip(plans, results, strict=True)}
    mb, sampled = (
        _sweep_of(protocol, cfg, {(e, s): done[protocol, e, s] for e, s in pairs})
        for protocol in windows
    )
    return SeedResult(seed, problem, floor, mb, sampled)
