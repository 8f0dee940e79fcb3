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

One run, from its plan to its result, is in :mod:`hessnoise.experiments.floor_sgd` (its names
are re-exported here); runs advanced together in :mod:`hessnoise.experiments.floor_sgd_batched`.
The fits are in :mod:`hessnoise.experiments.a3_fits`, the curved-floor probe in
:mod:`hessnoise.experiments.curved_floor`.

On CUDA everything (data, network, generator, Hessians, eigensolves) stays on the device; the
host sees a scalar per loss evaluation and the eigenvalues of each snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from hessnoise._validate import choice, number
from hessnoise.experiments import sweep_design
from hessnoise.experiments.floor import Floor, FloorConfig, Problem, find_floor, setup
from hessnoise.experiments.floor_sgd import (  # noqa: F401  (the chapter's names, re-exported)
    CHECKPOINT_VERSION,
    PROTOCOLS,
    TOL_FACTORS,
    RunPlan,
    RunResult,
    draw_minibatch,
    noise_power,
    plan_run,
    project_to_floor,
    run_plan,
    run_sgd,
    schedule,
    snapshot,
    summary,
)
from hessnoise.experiments.floor_sgd_batched import batched_by_default, run_batched
from hessnoise.progress import progress, timed
from hessnoise.scales import by_scale

PAPER_SLOPE = -40.07  # Fig. 2(a): y = wx + b with w = −40.07, b = −1.22e−5
PAPER_INTERCEPT = -1.22e-5


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
        return sweep_design.distinct(self.eta_sweep, self.batch_sweep)


def sweep_pairs(cfg: NegativeEigenvaluesConfig) -> list[tuple[float, int]]:
    """The distinct (η, S) of both sweeps: the η sweep, then the S sweep without the centre."""
    return sweep_design.pairs(cfg)


def _sweep_of(protocol: str, cfg: NegativeEigenvaluesConfig, done: dict) -> Sweep:
    return Sweep(protocol, *sweep_design.split(cfg, done))


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
    return [run_plan(problem, floor, cfg, p) for p in progress(plans, desc=desc, label=label)]


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
