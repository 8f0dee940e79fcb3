r"""Fits of Fig. 2(a) and the tests of Appendix A.3, on the runs of
:mod:`hessnoise.experiments.negative_eigenvalues` (plain numbers, no torch).

* :func:`analyse`: the paper's line y = wx + b of Σλ₋ against ⟨L⟩ − L*, the two-term law
  y = a√x + bx that a curved floor predicts, the log–log exponent, all with bootstrap
  confidence intervals, and the collapse test (η-sweep slope against S-sweep slope);
* :func:`excess_vs_theory` and :func:`excess_error_budget` test A.3's ⟨L⟩ − L* = 𝒞·Σλ_i;
* :func:`threshold_sensitivity`: how much Σλ₋ depends on the threshold for "negative";
* :func:`sweep_facts`: the numbers a reader needs about the sweeps of every seed;
* :func:`across_seeds`: the spread of the fits over seeds (each its own data subset,
  initialization and floor), and whether the law holds for each.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hessnoise.experiments.floor import Floor
from hessnoise.experiments.negative_eigenvalues import RunResult, SeedResult, Sweep
from hessnoise.stats import (
    Interval,
    LineFit,
    bootstrap_interval,
    chi2_zero,
    line_fit,
    mean_se,
    power_law_exponent,
    t_interval,
    two_term_fit,
)


@dataclass(frozen=True)
class Collapse:
    """The collapse test: the OLS slope of Σλ₋ on ⟨L⟩ − L* from the η sweep against the
    one from the S sweep.  ``z`` = |w_η − w_S|/se, with se the bootstrap standard deviation
    of the difference; :attr:`detectable` = 3·se is the smallest slope difference the test
    would call significant at 3σ, and ``resolution`` = 3·se/|mean slope| the same relative to
    the slope."""

    slope_eta: Interval
    slope_batch: Interval
    diff: float
    se: float
    z: float
    resolution: float

    @property
    def detectable(self) -> float:
        return 3 * self.se


@dataclass(frozen=True)
class A3Analysis:
    """Fits of Σλ₋ against ⟨L⟩ − L* over the runs of a sweep, with bootstrap intervals.

    ``line`` holds the t-distribution intervals of OLS on the run means (they include lack of
    fit); ``slope``, ``intercept`` and ``r2`` are bootstrap intervals (sampling noise of the
    time averages only).  ``a_sqrt``/``b_lin`` are the two-term law's coefficients,
    ``exponent`` the log–log slope.  ``x``, ``y``, ``y_se`` are per run ``(runs,)``.
    """

    x: np.ndarray
    y: np.ndarray
    y_se: np.ndarray
    line: LineFit
    slope: Interval
    intercept: Interval
    r2: Interval
    a_sqrt: Interval
    b_lin: Interval
    exponent: Interval
    collapse: Collapse
    autocorrelation: float
    level: float = 0.95

    @property
    def proportional(self) -> bool:
        """A.3's law within the intervals: exponent 1, intercept 0 and no √x term."""
        return (
            self.exponent.contains(1.0)
            and self.intercept.contains(0.0)
            and self.a_sqrt.contains(0.0)
        )


def _run_means(r: RunResult, idx: np.ndarray) -> tuple[float, float]:
    return float(r.block_excess.numpy()[idx].mean()), float(r.sum_neg[:, 0].numpy()[idx].mean())


def _exponent(x: np.ndarray, y: np.ndarray) -> float:
    return power_law_exponent(x, y) if (y < 0).all() and (x > 0).all() else float("nan")


def analyse(sw: Sweep, n_boot: int, seed: int, level: float = 0.95) -> A3Analysis:
    """Fit the law over all runs of ``sw`` and run the collapse test.

    Intervals come from a bootstrap over the measurement blocks of each run: each replicate
    resamples every run's blocks with replacement (the centre run once, shared by both
    sweeps), recomputes the run means and refits.  The runs are a fixed design (η and S are
    chosen), so the randomness to propagate is that of the time averages.
    """
    runs = sw.runs
    pos = {id(r): i for i, r in enumerate(runs)}
    eta_i = [pos[id(r)] for r in sw.eta_sweep]
    bat_i = [pos[id(r)] for r in sw.batch_sweep]
    full = [np.arange(r.block_excess.numel()) for r in runs]
    x, y = np.array([_run_means(r, i) for r, i in zip(runs, full, strict=True)]).T
    rng = np.random.default_rng(seed)
    keys = ("slope", "intercept", "r2", "a", "b", "p", "w_eta", "w_batch")
    boot = {k: np.empty(n_boot) for k in keys}
    for b in range(n_boot):
        idx = [rng.integers(0, len(i), len(i)) for i in full]
        xb, yb = np.array([_run_means(r, i) for r, i in zip(runs, idx, strict=True)]).T
        line = line_fit(xb, yb)
        boot["slope"][b], boot["intercept"][b], boot["r2"][b] = line.slope, line.intercept, line.r2
        boot["a"][b], boot["b"][b] = two_term_fit(xb, yb)
        boot["p"][b] = _exponent(xb, yb)
        boot["w_eta"][b] = line_fit(xb[eta_i], yb[eta_i]).slope
        boot["w_batch"][b] = line_fit(xb[bat_i], yb[bat_i]).slope

    def interval(value: float, key: str) -> Interval:
        return bootstrap_interval(value, boot[key], level)

    line = line_fit(x, y, level)
    a, b_lin = two_term_fit(x, y)
    w_eta, w_batch = line_fit(x[eta_i], y[eta_i]).slope, line_fit(x[bat_i], y[bat_i]).slope
    se = float(np.std(boot["w_eta"] - boot["w_batch"], ddof=1))
    collapse = Collapse(
        slope_eta=interval(w_eta, "w_eta"),
        slope_batch=interval(w_batch, "w_batch"),
        diff=w_eta - w_batch,
        se=se,
        z=abs(w_eta - w_batch) / se if se > 0 else float("inf"),
        resolution=3 * se / abs((w_eta + w_batch) / 2),
    )
    # lag-1 autocorrelation of Σλ₋ between consecutive snapshots, pooled over runs
    num = den = 0.0
    for r in runs:
        d = r.sum_neg[:, 0].numpy() - r.sum_neg[:, 0].numpy().mean()
        num += float((d[1:] * d[:-1]).sum())
        den += float((d * d).sum())
    return A3Analysis(
        x=x,
        y=y,
        y_se=np.array([r.sum_negative_se for r in runs]),
        line=line,
        slope=interval(line.slope, "slope"),
        intercept=interval(line.intercept, "intercept"),
        r2=interval(line.r2, "r2"),
        a_sqrt=interval(a, "a"),
        b_lin=interval(b_lin, "b"),
        exponent=interval(_exponent(x, y), "p"),
        collapse=collapse,
        autocorrelation=num / den if den > 0 else 0.0,
        level=level,
    )


def excess_vs_theory(sw: Sweep, trace_floor: float) -> tuple[np.ndarray, np.ndarray]:
    """Relative errors, per run (``Sweep.runs`` order), of A.3's ⟨L⟩ − L* = 𝒞·Σλ_i with the
    trace at the floor (as printed) and with the run's own mean trace
    (:attr:`RunResult.excess_a3`)."""
    printed = np.array([r.excess / (r.C * trace_floor) - 1 for r in sw.runs])
    running = np.array([r.excess / r.excess_a3 - 1 for r in sw.runs])
    return printed, running


def excess_error_budget(sw: Sweep, floor: Floor, tau_equil: float) -> np.ndarray:
    """What A.3's leading-order ⟨L⟩ − L* = 𝒞·Σλ_i neglects, per run, relative to it:

    * three standard errors of the time average;
    * eq. 11's O(η) term, ⟨θ_i²⟩ = ηκ/(2 − ηλ_i) ≈ (ηκ/2)(1 + ηλ_i/2), weighted by λ_i:
      (η/2)Σλ_i²/Σλ_i;
    * the share of the trace in directions slower than the equilibration window
      (λ_i < 1/τ_equil), which have not reached their stationary ⟨θ_i²⟩.
    """
    lam = floor.eigenvalues[floor.eigenvalues > floor.zero_tol]
    eta_term = (lam**2).sum().item() / (2 * lam.sum().item())
    slow = lam[lam < 1 / tau_equil].sum().item() / lam.sum().item()
    return np.array([3 * r.excess_se / r.excess + r.eta * eta_term + slow for r in sw.runs])


def threshold_sensitivity(sw: Sweep) -> float:
    """max over runs and thresholds of |⟨Σλ₋⟩(tol)/⟨Σλ₋⟩(zero_tol) − 1|."""
    worst = 0.0
    for r in sw.runs:
        means = r.sum_neg.mean(0)
        if means[0] != 0:
            worst = max(worst, (means / means[0] - 1).abs().max().item())
    return worst


@dataclass(frozen=True)
class AcrossSeeds:
    """The fits of :func:`analyse` over ``seeds`` seeds.

    ``exponent`` and ``intercept`` are the means over seeds with Student's t intervals (NaN
    for one seed), ``*_sd`` their standard deviations over seeds; ``proportional`` counts the
    seeds whose own intervals are consistent with A.3's law (:attr:`A3Analysis.proportional`).
    ``collapse_z_max``, ``resolution_max`` and ``detectable_max`` are the worst collapse test
    over seeds.
    """

    seeds: int
    exponent: Interval
    exponent_sd: float
    intercept: Interval
    intercept_sd: float
    proportional: int
    collapse_z_max: float
    resolution_max: float
    detectable_max: float

    @property
    def holds(self) -> bool:
        """A.3's proportionality holds at every seed."""
        return self.proportional == self.seeds


def _sd(v: np.ndarray) -> float:
    return float(v.std(ddof=1)) if v.size > 1 else float("nan")


def across_seeds(analyses: list[A3Analysis]) -> AcrossSeeds:
    """Summarize :func:`analyse` over seeds (see :class:`AcrossSeeds`)."""
    p = np.array([a.exponent.value for a in analyses])
    b = np.array([a.intercept.value for a in analyses])
    return AcrossSeeds(
        seeds=len(analyses),
        exponent=t_interval(p),
        exponent_sd=_sd(p),
        intercept=t_interval(b),
        intercept_sd=_sd(b),
        proportional=sum(a.proportional for a in analyses),
        collapse_z_max=max(a.collapse.z for a in analyses),
        resolution_max=max(a.collapse.resolution for a in analyses),
        detectable_max=max(a.collapse.detectable for a in analyses),
    )


def sweep_facts(results: list[SeedResult], tau_equil: float) -> dict[str, float | int | str]:
    """What the chapter states about the sampled-label runs of every seed: their number and
    range of 𝒞, A.3's first half (worst relative errors and error budget), the negative
    spectrum, the drift along the valley and the fluctuation–dissipation gaps."""
    runs = [r for res in results for r in res.sampled.runs]
    printed, running, budget, floor_drift = [], [], [], []
    for res in results:
        p, q = excess_vs_theory(res.sampled, res.floor.trace)
        printed += list(np.abs(p))
        running += list(np.abs(q))
        budget += list(excess_error_budget(res.sampled, res.floor, tau_equil))
        floor_drift += [1 - r.end_floor_trace / res.floor.trace for r in res.sampled.runs]
    trace_drift = [
        1 - r.trace.mean().item() / res.floor.trace for res in results for r in res.sampled.runs
    ]
    gaps = [r.fdr_gap.value for r in runs]
    chi2, dof, p_value = chi2_zero([r.fdr_gap for r in runs])
    pooled = mean_se(gaps)
    cs = [r.C for r in runs]
    return {
        "n_runs": len(runs),
        "n_spectra": sum(r.sum_neg.shape[0] for r in runs),
        "sweep_values": len(results[0].sampled.eta_sweep),
        "c_min": min(cs),
        "c_max": max(cs),
        "c_ratio": max(cs) / min(cs),
        "excess_relerr_printed_max": max(printed),
        "excess_relerr_running_max": max(running),
        "excess_budget_max": max(budget),
        "n_negative_range": f"{min(int(r.n_neg.min()) for r in runs)}–"
        f"{max(int(r.n_neg.max()) for r in runs)}",
        "trace_drift_window_max": max(abs(r.trace_drift) for r in runs),
        "trace_drift_max": max(trace_drift),
        "floor_drift_max": max(floor_drift),
        "fdr_gap_min": min(gaps),
        "fdr_gap_max": max(gaps),
        "fdr_gap_mean": pooled.value,
        "fdr_gap_mean_se": pooled.se,
        "fdr_chi2": chi2,
        "fdr_dof": dof,
        "fdr_p": p_value,
    }
