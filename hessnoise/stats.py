r"""The statistics the chapters share, where scipy has no one-call equivalent.

* :class:`Estimate` — a mean with its standard error (:func:`mean_se`), and :func:`z_between`,
  the distance between two independent estimates in standard errors; :func:`chi2_zero` tests
  many independent estimates against zero at once.
* :class:`Interval` — an estimate with a two-sided confidence interval: from a bootstrap
  (:func:`bootstrap_interval`), from Student's t across seeds (:func:`t_interval`), or from a
  line fit.
* :class:`LineFit` — ordinary least squares y = slope·x + intercept through
  ``scipy.stats.linregress``, with t-distribution intervals on both coefficients
  (:func:`line_fit`).
* :func:`power_law_exponent` — the log–log slope p of |y| ∝ x^p; :func:`two_term_fit` — the
  coefficients of y = a√x + bx.

Everything takes array-likes and returns plain Python floats, so that results go straight
into the results files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Estimate:
    """A value with its standard error ``se`` (both floats) from ``n`` samples."""

    value: float
    se: float
    n: int = 0

    def interval(self, level: float = 0.95) -> Interval:
        """The normal-approximation interval value ± z·se at ``level``."""
        z = float(stats.norm.ppf(0.5 + level / 2))
        return Interval(self.value, self.value - z * self.se, self.value + z * self.se, level)

    def __format__(self, spec: str) -> str:
        return f"{self.value:{spec}} ± {self.se:{spec}}"


@dataclass(frozen=True)
class Interval:
    """An estimate ``value`` with a two-sided ``level`` interval [``lo``, ``hi``]."""

    value: float
    lo: float
    hi: float
    level: float = 0.95

    def contains(self, v: float) -> bool:
        """Whether ``v`` lies in [lo, hi] (False when the interval is undefined, NaN)."""
        return bool(self.lo <= v <= self.hi)

    def __format__(self, spec: str) -> str:
        return f"{self.value:{spec}} [{self.lo:{spec}}, {self.hi:{spec}}]"


def mean_se(x: Any, axis: int | None = None) -> Estimate:
    """Mean of ``x`` and its standard error s/√n (sample standard deviation, ddof = 1)."""
    a = np.asarray(x, dtype=np.float64)
    n = a.size if axis is None else a.shape[axis]
    se = float(a.std(axis=axis, ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return Estimate(float(a.mean(axis=axis)), se, int(n))


def z_between(a: Estimate, b: Estimate) -> float:
    """(a − b) in standard errors of the difference, for independent estimates."""
    return (a.value - b.value) / math.hypot(a.se, b.se)


def chi2_zero(estimates: list[Estimate]) -> tuple[float, int, float]:
    """χ² = Σ (value/se)² of independent estimates against the hypothesis that all are zero:
    (χ², degrees of freedom, p-value)."""
    chi2 = float(sum((e.value / e.se) ** 2 for e in estimates))
    dof = len(estimates)
    return chi2, dof, float(stats.chi2.sf(chi2, dof))


def t_interval(x: Any, level: float = 0.95) -> Interval:
    """The mean of ``x`` with Student's t interval (e.g. a slope across seeds)."""
    est = mean_se(x)
    t = float(stats.t.ppf(0.5 + level / 2, est.n - 1)) if est.n > 1 else math.nan
    return Interval(est.value, est.value - t * est.se, est.value + t * est.se, level)


def bootstrap_interval(value: float, replicates: Any, level: float = 0.95) -> Interval:
    """The percentile interval of bootstrap ``replicates`` around ``value`` (NaNs ignored;
    an undefined interval when every replicate is NaN)."""
    r = np.asarray(replicates, dtype=np.float64)
    if np.isnan(r).all():
        return Interval(float(value), math.nan, math.nan, level)
    lo, hi = np.nanpercentile(r, (50 * (1 - level), 50 * (1 + level)))
    return Interval(float(value), float(lo), float(hi), level)


@dataclass(frozen=True)
class LineFit:
    """Ordinary least squares y = slope·x + intercept with t-distribution intervals.

    ``se_*`` are the usual OLS standard errors (residual variance with n − 2 degrees of
    freedom); ``ci_*`` are ``level`` two-sided intervals.
    """

    slope: float
    intercept: float
    r2: float
    se_slope: float
    se_intercept: float
    ci_slope: tuple[float, float]
    ci_intercept: tuple[float, float]
    n: int

    @property
    def slope_interval(self) -> Interval:
        return Interval(self.slope, *self.ci_slope)

    @property
    def intercept_interval(self) -> Interval:
        return Interval(self.intercept, *self.ci_intercept)


def line_fit(x: Any, y: Any, level: float = 0.95) -> LineFit:
    """Fit y = slope·x + intercept (``scipy.stats.linregress``) with t-intervals at ``level``."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or x.size < 3:
        raise ValueError(f"x and y must be 1-d of equal length ≥ 3; got {x.shape} and {y.shape}")
    if np.ptp(x) == 0:
        raise ValueError("x must not be constant: the slope is undefined")
    fit = stats.linregress(x, y)
    t = float(stats.t.ppf(0.5 + level / 2, x.size - 2))
    slope, intercept = float(fit.slope), float(fit.intercept)
    se_s, se_i = float(fit.stderr), float(fit.intercept_stderr)
    return LineFit(
        slope=slope,
        intercept=intercept,
        r2=float(fit.rvalue**2) if np.ptp(y) > 0 else 1.0,
        se_slope=se_s,
        se_intercept=se_i,
        ci_slope=(slope - t * se_s, slope + t * se_s),
        ci_intercept=(intercept - t * se_i, intercept + t * se_i),
        n=int(x.size),
    )


def two_term_fit(x: Any, y: Any) -> tuple[float, float]:
    """Least squares y = a·√x + b·x (no intercept): (a, b).  A flat valley floor has a = 0."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    (a, b), *_ = np.linalg.lstsq(np.stack([np.sqrt(x), x], 1), y, rcond=None)
    return float(a), float(b)


def power_law_exponent(x: Any, y: Any) -> float:
    """Slope p of log|y| = p·log x + c, for x > 0 and y of one sign (p = 1: proportional)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if (x <= 0).any() or not ((y < 0).all() or (y > 0).all()):
        raise ValueError("power_law_exponent needs x > 0 and y of one sign")
    return float(stats.linregress(np.log(x), np.log(np.abs(y))).slope)
