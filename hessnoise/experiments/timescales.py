r"""Section 2.1.3's timescale separation on the network of Section 4.1 (plain numbers).

Theorem 1 treats the non-degenerate coordinates θ̄ as stationary while the degenerate ones θ̂
move: the θ̄ must relax much faster than the floor changes under them.  In the
Ornstein–Uhlenbeck picture of the paper, direction i of the floor's Hessian relaxes in
1/(ηλ_i) steps, SGD time τ = ηt = 1/λ_i (its variance twice as fast).  This module sets these
times against the windows of the SGD runs of the negative-eigenvalue chapter and against the
time over which their Hessian trace drifts:

* :func:`drift`: the drift rate of the trace along the floor in one run, from the floor point
  below its last state, and the drift time T/|dT/dτ|; :func:`drift_law`, the rate against the
  noise scale over the runs;
* :func:`timescales`: the split of the floor's spectrum into n non-degenerate eigenvalues and
  a bulk at rounding, how many of the n relax more slowly than the equilibration window and
  than the drift time (divided by a safety factor), and how the split looks at SGD states.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hessnoise._validate import number
from hessnoise.experiments.floor import Floor
from hessnoise.experiments.negative_eigenvalues import (
    NegativeEigenvaluesConfig,
    RunResult,
    Sweep,
    schedule,
)
from hessnoise.experiments.noise_covariance import StateAnalysis
from hessnoise.stats import Interval, LineFit, line_fit


@dataclass(frozen=True)
class Drift:
    """The drift of the Hessian trace along the floor in one SGD run at (η, S), noise scale 𝒞.

    ``rate`` = (T_end/T* − 1)/τ_run: T* the trace at the floor where the run starts, T_end the
    trace at the floor point below its last state (Gauss–Newton from there), τ_run = ηt its
    length in SGD time; ``tau_drift`` = 1/|rate|, the SGD time in which the floor's trace would
    change by its own size at that rate.  ``snapshot_rate`` is (1/T*)dT/dτ from a line through
    the trace at the run's snapshots, with its 95 % t-interval: the same drift, seen through
    the fluctuations of the states around the floor.
    """

    eta: float
    batch_size: int
    C: float
    rate: float
    tau_drift: float
    snapshot_rate: Interval


def snapshot_times(run: RunResult, cfg: NegativeEigenvaluesConfig) -> np.ndarray:
    """SGD time τ = ηt of each snapshot of a run ``(snapshots,)``, from the run's schedule."""
    snaps = run.trace.numel()
    equil, block, _ = schedule(cfg.tau_equil, cfg.tau_measure, run.eta, snaps, cfg.loss_points)
    return run.eta * (equil + block * np.arange(1, snaps + 1))


def drift(run: RunResult, cfg: NegativeEigenvaluesConfig, trace_floor: float) -> Drift:
    """The drift of the Hessian trace in one sampled-label run (see :class:`Drift`)."""
    number("trace_floor", trace_floor, lo=0, lo_open=True)
    tau = snapshot_times(run, cfg)
    fit = line_fit(tau, run.trace.numpy() / trace_floor)
    rate = (run.end_floor_trace / trace_floor - 1) / (run.eta * run.steps)
    return Drift(
        eta=run.eta,
        batch_size=run.batch_size,
        C=run.C,
        rate=rate,
        tau_drift=1 / abs(rate) if rate != 0 else math.inf,
        snapshot_rate=fit.slope_interval,
    )


def drift_law(drifts: list[Drift]) -> LineFit:
    """The drift rate against the noise scale 𝒞 over the runs, by least squares: Theorem 1
    makes the rate per unit SGD time −𝒞‖∇̂T‖²/T*, a line through the origin whatever η and S."""
    return line_fit([d.C for d in drifts], [d.rate for d in drifts])


@dataclass(frozen=True)
class Timescales:
    """Section 2.1.3 at the floor.

    The floor's spectrum splits into ``n`` eigenvalues above the numerical zero, from
    ``lam_max`` down to ``gap``, and a bulk whose largest magnitude is ``bulk_max``:
    ``split_decades`` = log₁₀(gap/bulk_max).  Relaxation times 1/λ_i (SGD time) run from
    ``tau_fast`` to ``tau_slow``.  ``slow_directions`` counts the non-degenerate directions
    with 1/λ_i > ``tau_equil`` (slower than the equilibration window of the runs),
    ``slow_measure`` those slower than the whole run (``tau_equil + tau_measure``), and
    ``slow_drift_directions`` those with 1/λ_i > ``tau_drift``/``separation``: not separated
    from the drift of the trace by the factor ``separation``, at the drift time
    ``tau_drift`` of the centre run (the fastest of all runs: ``tau_drift_min``).  The
    ``*_share`` fields are the shares of the floor's trace these directions carry.  At the SGD
    states of the chapter, ``sgd_bulk_max`` is the largest magnitude among the P − n smallest
    eigenvalues, ``sgd_split_min`` the smallest ratio of the n-th largest magnitude to it,
    and ``buried`` the number of the floor's non-degenerate eigenvalues below ``sgd_bulk_max``.
    """

    n: int
    lam_max: float
    gap: float
    bulk_max: float
    split_decades: float
    inner_gap_decades: float
    tau_fast: float
    tau_slow: float
    tau_equil: float
    tau_measure: float
    slow_directions: int
    slow_share: float
    slow_measure: int
    tau_drift: float
    tau_drift_min: float
    tau_drift_max: float
    separation: float
    slow_drift_directions: int
    slow_drift_share: float
    sgd_bulk_max: float
    sgd_split_min: float
    buried: int

    @property
    def separated(self) -> bool:
        """Section 2.1.3 holds at the centre run: every non-degenerate direction relaxes at
        least ``separation`` times faster than the trace drifts."""
        return self.slow_drift_directions == 0


def timescales(
    floor: Floor,
    drifts: list[Drift],
    centre: Drift,
    sgd: list[StateAnalysis],
    cfg: NegativeEigenvaluesConfig,
    separation: float,
) -> Timescales:
    """Relaxation times at the floor against the runs' windows and drift (see
    :class:`Timescales`); ``sgd`` are analysed SGD states with all their eigenvalues."""
    number("separation", separation, lo=1)
    lam = floor.eigenvalues.numpy()
    nondeg = np.sort(lam[lam > floor.zero_tol])[::-1]
    n = nondeg.size
    bulk = np.sort(np.abs(lam))[::-1][n:]
    relax = 1 / nondeg
    trace = nondeg.sum()
    slow = relax > cfg.tau_equil
    slow_drift = relax > centre.tau_drift / separation
    sgd_bulk, sgd_split = [], []
    for s in sgd:
        mags = np.sort(np.abs(s.lam))[::-1]
        sgd_bulk.append(mags[n])
        sgd_split.append(mags[n - 1] / mags[n])
    bulk_edge = max(sgd_bulk) if sgd_bulk else math.nan
    return Timescales(
        n=n,
        lam_max=float(nondeg[0]),
        gap=float(nondeg[-1]),
        bulk_max=float(bulk.max()),
        split_decades=float(np.log10(nondeg[-1] / bulk.max())),
        inner_gap_decades=float(np.log10(nondeg[:-1] / nondeg[1:]).max()),
        tau_fast=float(relax[0]),
        tau_slow=float(relax[-1]),
        tau_equil=cfg.tau_equil,
        tau_measure=cfg.tau_measure,
        slow_directions=int(slow.sum()),
        slow_share=float(nondeg[slow].sum() / trace),
        slow_measure=int((relax > cfg.tau_equil + cfg.tau_measure).sum()),
        tau_drift=centre.tau_drift,
        tau_drift_min=min(d.tau_drift for d in drifts),
        tau_drift_max=max(d.tau_drift for d in drifts),
        separation=separation,
        slow_drift_directions=int(slow_drift.sum()),
        slow_drift_share=float(nondeg[slow_drift].sum() / trace),
        sgd_bulk_max=float(bulk_edge),
        sgd_split_min=float(min(sgd_split)) if sgd_split else math.nan,
        buried=int((nondeg < bulk_edge).sum()) if sgd_bulk else 0,
    )


def relaxation_times(floor: Floor) -> np.ndarray:
    """1/λ_i over the floor's non-degenerate eigenvalues, fastest first ``(n,)``: the
    relaxation times in SGD time τ = ηt (1/(ηλ_i) steps)."""
    lam = floor.eigenvalues.numpy()
    return np.sort(1 / lam[lam > floor.zero_tol])


def sweep_drifts(
    sweep: Sweep, cfg: NegativeEigenvaluesConfig, trace_floor: float
) -> tuple[list[Drift], Drift]:
    """:func:`drift` for every run of a sampled-label sweep, and the centre run's."""
    drifts = [drift(r, cfg, trace_floor) for r in sweep.runs]
    centre = next(d for d in drifts if d.eta == cfg.eta0 and d.batch_size == cfg.batch_size0)
    return drifts, centre
