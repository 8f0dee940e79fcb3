r"""One normalized noise Ĉ against the Hessian H at one state of the Section 4.1 network:
how well eq. 5 (Ĉ = H) holds.

:func:`compare` measures a dense noise against H's eigenpairs (:class:`NoiseFit`: alignment,
tr Ĉ/tr H, the exponent γ of vₖᵀĈvₖ ∝ λₖ^γ with its interval by :func:`power_law`), and
:func:`eq5_holds` reads the fit as a verdict.  The exact matrices are built in
:mod:`hessnoise.experiments.noise_matrices`, both noises and eq. 4 compared at a state in
:mod:`hessnoise.experiments.noise_covariance`, the exact noise checked against actual
mini-batch gradients in :mod:`hessnoise.experiments.noise_minibatch`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from hessnoise.stats import Interval, line_fit
from hessnoise.threads import threads


@dataclass(frozen=True)
class NoiseFit:
    """How a normalized noise Ĉ (eq. 5: Ĉ = H) compares with H at one state.

    ``alignment`` = tr(ĈH)/(‖Ĉ‖_F‖H‖_F); ``kappa_ratio`` = tr Ĉ/tr H (for the paper's noise
    κ_eff·S/(1 − S/M) with κ_eff = tr C/tr H; eq. 5: 1); ``gamma`` the least-squares slope of
    log vₖᵀĈvₖ on log λₖ (eq. 5: 1) with its 95 % t-interval, over the ``n_fit``
    eigendirections where both are above the rounding cut; ``n_unreached`` directions with λₖ
    above the cut but vₖᵀĈvₖ below it; ``scatter`` the residual standard deviation of the fit,
    in decades; ``median_ratio`` the median of vₖᵀĈvₖ/λₖ over the fitted directions (eq. 5:
    1); ``rank`` the rank bound of Ĉ and ``ceiling`` the largest alignment a positive
    semi-definite matrix of that rank can have with H (NaN without the full spectrum).
    ``vanishes``: Ĉ is zero to rounding (‖Ĉ‖_F below the cut); then the alignment and γ are
    undefined (NaN).
    """

    alignment: float
    kappa_ratio: float
    gamma: Interval
    n_fit: int
    n_unreached: int
    scatter: float
    median_ratio: float
    rank: int
    ceiling: float
    vanishes: bool


def power_law(lam: np.ndarray, power: np.ndarray, mask: np.ndarray) -> tuple[Interval, float]:
    """γ of power ∝ lam^γ over ``mask``, by least squares in log–log with its 95 % t-interval
    (:func:`hessnoise.stats.line_fit`), and the residual standard deviation in decades; an
    undefined interval (NaN) when fewer than 3 directions qualify."""
    if mask.sum() < 3:
        return Interval(math.nan, math.nan, math.nan), math.nan
    x, y = np.log10(lam[mask]), np.log10(power[mask])
    fit = line_fit(x, y)
    resid = y - (fit.slope * x + fit.intercept)
    return fit.slope_interval, float(resid.std(ddof=2))


def compare(
    c: Tensor, h: Tensor, lam: Tensor, vec: Tensor, cut: float, rank: int
) -> tuple[NoiseFit, np.ndarray]:
    """Compare a dense normalized noise ``c`` ``(P, P)`` with the Hessian ``h``, given its
    eigenpairs (``lam`` ascending ``(n,)`` and ``vec`` ``(P, n)``: all of them, or the
    leading n), the rounding ``cut`` and Ĉ's rank bound: the :class:`NoiseFit` and the powers
    vₖᵀĈvₖ along the eigenvectors ``(n,)``."""
    with threads("dense"):
        fro_c, fro_h = c.norm().item(), h.norm().item()
        tr_c, tr_h = torch.trace(c).item(), torch.trace(h).item()
        tr_ch = (c * h).sum().item()
        power = ((c @ vec) * vec).sum(0).cpu().numpy()
    lam_np = lam.cpu().numpy()
    vanishes = fro_c <= cut
    above = lam_np > cut
    mask = above & (power > cut) & (not vanishes)
    gamma, scatter = power_law(lam_np, power, mask)
    top = np.sort(np.clip(lam_np, 0, None))[::-1][:rank]
    full = lam_np.size == h.shape[0]
    return NoiseFit(
        alignment=math.nan if vanishes else tr_ch / (fro_c * fro_h),
        kappa_ratio=tr_c / tr_h,
        gamma=gamma,
        n_fit=int(mask.sum()),
        n_unreached=int((above & ~mask).sum()),
        scatter=scatter,
        median_ratio=float(np.median(power[mask] / lam_np[mask])) if mask.any() else math.nan,
        rank=rank,
        ceiling=float(np.sqrt((top**2).sum())) / fro_h if full else math.nan,
        vanishes=bool(vanishes),
    ), power


def eq5_holds(
    fit: NoiseFit, *, min_alignment: float = 0.9, factor: float = 2.0, margin: float = 0.1
) -> bool:
    """Eq. 5 at one state, read as: alignment ≥ ``min_alignment``, tr Ĉ/tr H within a
    ``factor`` of 1, and γ's 95 % interval inside [1 − ``margin``, 1 + ``margin``] (an
    equivalence test: with hundreds of directions the interval is narrow, and "contains 1"
    would reject any deviation, however small).  False where Ĉ vanishes."""
    return (
        not fit.vanishes
        and fit.alignment >= min_alignment
        and 1 / factor <= fit.kappa_ratio <= factor
        and 1 - margin <= fit.gamma.lo
        and fit.gamma.hi <= 1 + margin
    )
