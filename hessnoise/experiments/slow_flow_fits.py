r"""The fits of the slow-flow chapter, on the runs of :mod:`hessnoise.experiments.slow_flow_runs`
(plain numbers).

* :func:`fit_run` — a run's drift rate (the mean over replicas of each replica's line-fit
  slope of tr H(Φ) against τ, with its standard error), its ratios to the finite-η and the
  leading-order predictions, the Gauss–Newton map's ratio, and the cosine between the mean
  displacement along the floor and −P_Γ∇tr H;
* :func:`fit_seed` — per seed: the ratio at the smallest noise scale (the slow-flow limit),
  how the ratio grows with 𝒞, the collapse of the η and S sweeps at equal 𝒞, the smallest
  cosine;
* :func:`across_seeds` — what the chapter states over all seeds, and its verdicts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hessnoise.experiments.slow_flow import Prediction
from hessnoise.experiments.slow_flow_runs import FlowRun, FlowSweep
from hessnoise.stats import Estimate, mean_se, z_between


@dataclass(frozen=True)
class RunFit:
    """One run's measured rate d tr H(Φ)/dτ (``rate``), with the Gauss–Newton map's
    (``gn_rate``), both per unit τ, over the replicas; ``ratio`` and ``leading_ratio`` are the
    rate over the finite-η and the leading-order predictions, ``gn_ratio`` the Gauss–Newton
    rate over the finite-η prediction; ``cosine`` is between the mean displacement of Φ over
    the window and −P_Γ∇tr H, ``cosine_regularizer`` with −P_Γ∇R_η."""

    eta: float
    batch_size: int
    C: float
    rate: Estimate
    gn_rate: Estimate
    predicted: float
    leading: float
    cosine: float
    cosine_regularizer: float

    @property
    def ratio(self) -> Estimate:
        return Estimate(self.rate.value / self.predicted, self.rate.se / abs(self.predicted),
                        self.rate.n)  # fmt: skip

    @property
    def leading_ratio(self) -> Estimate:
        return Estimate(self.rate.value / self.leading, self.rate.se / abs(self.leading),
                        self.rate.n)  # fmt: skip

    @property
    def gn_ratio(self) -> Estimate:
        return Estimate(self.gn_rate.value / self.predicted,
                        self.gn_rate.se / abs(self.predicted), self.gn_rate.n)  # fmt: skip


def _cosine(a, b) -> float:
    return float((a @ b) / (a.norm() * b.norm()))


def fit_run(run: FlowRun, pred: Prediction) -> RunFit:
    """:class:`RunFit` of one run."""
    return RunFit(
        eta=run.eta, batch_size=run.batch_size, C=run.C,
        rate=mean_se(run.slopes("gf")), gn_rate=mean_se(run.slopes("gn")),
        predicted=run.predicted, leading=run.leading,
        cosine=_cosine(run.displacement, -pred.tangent_grad),
        cosine_regularizer=_cosine(run.displacement, -pred.regularizer_grad(run.eta)),
    )  # fmt: skip


def pooled(estimates: list[Estimate]) -> Estimate:
    """The inverse-variance weighted mean of independent estimates."""
    w = np.array([1 / e.se**2 for e in estimates])
    v = np.array([e.value for e in estimates])
    return Estimate(float((w * v).sum() / w.sum()), float(1 / np.sqrt(w.sum())),
                    sum(e.n for e in estimates))  # fmt: skip


@dataclass(frozen=True)
class Pair:
    """The η-sweep run and the S-sweep run at one noise scale 𝒞: ``z`` = the difference of
    their ratios (to the finite-η prediction) in standard errors, ``raw_z`` that of their
    rates themselves (the leading-order collapse)."""

    C: float
    eta_run: RunFit
    batch_run: RunFit
    z: float
    raw_z: float
    detectable: float


@dataclass
class SeedFit:
    """The fits of one seed.  ``drift_ratio`` is the pooled ratio of the runs at the smallest
    𝒞 (the slow-flow limit) to the finite-η prediction, ``leading_ratio`` the same against
    the leading order; ``slope`` the fitted growth of the ratio per unit 𝒞 (weighted least
    squares ratio = a + b𝒞 over all runs, ``intercept`` a); ``pairs`` the collapse test."""

    seed: int
    runs: list[RunFit]
    pairs: list[Pair]
    drift_ratio: Estimate
    leading_ratio: Estimate
    intercept: float
    slope: float

    @property
    def collapse_z(self) -> float:
        return max(abs(p.z) for p in self.pairs)

    @property
    def collapse_raw_z(self) -> float:
        return max(abs(p.raw_z) for p in self.pairs)

    @property
    def resolution(self) -> float:
        """The largest relative ratio difference the collapse test could miss (3σ)."""
        return max(p.detectable for p in self.pairs)

    @property
    def cosine(self) -> float:
        return min(r.cosine for r in self.runs)

    @property
    def max_ratio(self) -> RunFit:
        return max(self.runs, key=lambda r: r.ratio.value)


def fit_seed(seed: int, sw: FlowSweep, pred: Prediction) -> SeedFit:
    """:class:`SeedFit` of one seed's sweeps."""
    fits = {id(r): fit_run(r, pred) for r in sw.runs}
    runs = list(fits.values())
    c_min = min(r.C for r in runs)
    low = [r for r in runs if r.C == c_min]
    pairs = []
    for a in sw.eta_sweep:
        for b in sw.batch_sweep:
            if a is not b and np.isclose(a.C, b.C):
                fa, fb = fits[id(a)], fits[id(b)]
                se = float(np.hypot(fa.ratio.se, fb.ratio.se))
                mean = (fa.ratio.value + fb.ratio.value) / 2
                pairs.append(Pair(a.C, fa, fb, z_between(fa.ratio, fb.ratio),
                                  z_between(fa.rate, fb.rate), 3 * se / mean))  # fmt: skip
    c = np.array([r.C for r in runs])
    y = np.array([r.ratio.value for r in runs])
    w = np.array([1 / r.ratio.se**2 for r in runs])
    slope, intercept = np.polyfit(c, y, 1, w=np.sqrt(w))
    return SeedFit(
        seed, runs, pairs, pooled([r.ratio for r in low]),
        pooled([r.leading_ratio for r in low]), float(intercept), float(slope),
    )  # fmt: skip


@dataclass(frozen=True)
class AcrossSeeds:
    """What the chapter states over all seeds: the per-seed drift ratios at the smallest 𝒞
    (``ratio_min``/``ratio_max``, and the same against the leading order), the largest
    ratio of any run with its 𝒞 and η, the collapse test's largest z (and the raw rates'),
    its resolution, the smallest cosine, and the Gauss–Newton ratios' range."""

    seeds: int
    c_min: float
    c_max: float
    ratio_min: float
    ratio_max: float
    leading_min: float
    leading_max: float
    worst_ratio: float
    worst_c: float
    worst_eta: float
    slope_mean: float
    collapse_z: float
    collapse_raw_z: float
    resolution: float
    cosine: float
    gn_ratio_min: float
    gn_ratio_max: float
    rate_holds: bool
    every_c_holds: bool
    direction_holds: bool
    collapse_holds: bool


def across_seeds(fits: list[SeedFit], tolerance: float, cosine_bound: float,
                 z_bound: float) -> AcrossSeeds:  # fmt: skip
    """Summaries and verdicts (see :class:`AcrossSeeds`)."""
    runs = [r for f in fits for r in f.runs]
    worst = max(runs, key=lambda r: abs(r.ratio.value - 1))
    ratios = [f.drift_ratio.value for f in fits]
    leading = [f.leading_ratio.value for f in fits]
    gn = [r.gn_ratio.value for r in runs]
    return AcrossSeeds(
        seeds=len(fits), c_min=min(r.C for r in runs), c_max=max(r.C for r in runs),
        ratio_min=min(ratios), ratio_max=max(ratios), leading_min=min(leading),
        leading_max=max(leading), worst_ratio=worst.ratio.value, worst_c=worst.C,
        worst_eta=worst.eta, slope_mean=float(np.mean([f.slope for f in fits])),
        collapse_z=max(f.collapse_z for f in fits),
        collapse_raw_z=max(f.collapse_raw_z for f in fits),
        resolution=max(f.resolution for f in fits), cosine=min(f.cosine for f in fits),
        gn_ratio_min=min(gn), gn_ratio_max=max(gn),
        rate_holds=all(abs(r - 1) < tolerance for r in ratios),
        every_c_holds=all(abs(r.ratio.value - 1) < tolerance for r in runs),
        direction_holds=min(f.cosine for f in fits) > cosine_bound,
        collapse_holds=max(f.collapse_z for f in fits) < z_bound,
    )  # fmt: skip


@dataclass(frozen=True)
class SeriesFit:
    """The dense series of one run against the theory, per time τ ``(k,)``: ``z`` is
    (measured − predicted decrease of tr H(Φ))/se over replicas, and ``gn_excess_ratio`` the
    measured Gauss–Newton excess E[tr H(Φ_GN)] − E[tr H(Φ)] over its second-order
    prediction; ``follows`` whether |z| < ``z_bound`` at every time."""

    taus: np.ndarray
    z: np.ndarray
    gn_excess_ratio: np.ndarray
    follows: bool

    @property
    def gn_excess_ratio_max(self) -> float:
        return float(self.gn_excess_ratio.max())

    @property
    def tau_at_max(self) -> float:
        return float(self.taus[int(np.argmax(self.gn_excess_ratio))])


def series_facts(run: FlowRun, fit: SeriesFit) -> dict[str, float]:
    """For ``Chapter.record``: the first time of the series, the largest |z|, Gauss–Newton's
    decrease over the limit map's at the first and the last time, and the largest measured
    Gauss–Newton excess over its second-order prediction with its time."""
    return {
        "tau_min": float(run.taus.min()),
        "z_max": float(np.abs(fit.z).max()),
        "gn_over_gf_first": float(run.gn[:, 1].mean() / run.gf[:, 1].mean()),
        "gn_over_gf_last": float(run.gn[:, -1].mean() / run.gf[:, -1].mean()),
        "gn_excess_ratio_max": fit.gn_excess_ratio_max,
        "tau_at_max": fit.tau_at_max,
    }


def fit_series(run: FlowRun, pred: Prediction, z_bound: float) -> SeriesFit:
    """:class:`SeriesFit` of a run's dense series."""
    y = run.gf[:, 1:]
    se = y.std(0, ddof=1) / np.sqrt(y.shape[0])
    z = (y.mean(0) - run.predicted * run.taus) / se
    excess = (run.gn[:, 1:] - run.gf[:, 1:]).mean(0)
    ratio = excess / pred.gn_excess(run.eta, run.batch_size, run.taus)
    return SeriesFit(run.taus, z, ratio, bool((np.abs(z) < z_bound).all()))
