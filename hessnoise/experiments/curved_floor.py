r"""The curved floor: the √𝒞 term it adds to the sum of negative eigenvalues.

This book's own follow-up to Fig. 2(a).  Eq. 1 has a flat floor; a real valley floor is a
curved manifold, and the Hessian a distance d from it gains a term linear in d along the
floor (the second fundamental form), which the average of s₋(H) = Σ min(μ, 0) keeps.
:func:`curvature_probe` freezes the valley: it displaces the floor point θ* by √𝒞·u, with u
drawn like the stationary state of eq. 11, and compares exact spectra with two first-order
(in √𝒞) predictions built from T = ∂_u H, the derivative of the Hessian along u at θ*.
:func:`probe_deviation` compares the probe with the SGD runs at their 𝒞.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from hessnoise.curvature import spectrum
from hessnoise.experiments.floor import DTYPE, Floor, Problem
from hessnoise.experiments.negative_eigenvalues import Sweep
from hessnoise.scales import by_scale
from hessnoise.threads import threads


@dataclass(frozen=True)
class CurvedFloorConfig:
    """The noise scales 𝒞 at which the probe freezes a displacement (increasing)."""

    cs: tuple[float, ...]

    def __post_init__(self) -> None:
        if list(self.cs) != sorted(set(self.cs)) or self.cs[0] <= 0:
            raise ValueError(f"cs={self.cs!r} must be positive and strictly increasing")

    @classmethod
    def for_scale(cls, scale: str) -> CurvedFloorConfig:
        # dense where the SGD runs of the small and paper scales sit (𝒞 ≈ 1e-4 to 3e-3)
        dense = (1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2)
        sparse = (1e-8, 1e-6, 1e-4, 1e-2)
        return by_scale(scale, smoke=cls(sparse), small=cls(dense), paper=cls(dense))


@dataclass
class CurvatureProbe:
    """Exact Σλ₋ at frozen displacements θ* + √𝒞·u from the floor, against two first-order
    (in √𝒞) predictions built from T = ∂_u H:

    * ``linear``: s₋(H* + √𝒞·T), the spectrum of the Hessian expanded to first order;
    * ``floor_term``: √𝒞·s₋(N⊤TN) with N the floor's null space: the part that comes from the
      curvature of the floor alone (zero for a flat floor, as in Lemma 1's coordinates).

    u = Σ_i √2 z_i v_i over the floor's non-degenerate eigenvectors (z ~ N(0, I)), so that
    ⟨θ_i²⟩ = 2𝒞 as in eq. 11 at leading order.  ``shape_ratio`` = ‖N⊤TN‖_F/‖T‖_F;
    ``fd_relerr`` compares the central differences for T at steps h and 2h.  The arrays are
    per 𝒞, ``(len(cs),)``.
    """

    cs: np.ndarray
    exact: np.ndarray
    linear: np.ndarray
    floor_term: np.ndarray
    excess: np.ndarray
    shape_ratio: float
    fd_relerr: float
    null_dim: int

    @property
    def linear_share(self) -> np.ndarray:
        """First-order prediction / exact Σλ₋, per 𝒞 (→ 1 as 𝒞 → 0)."""
        return self.linear / self.exact

    @property
    def floor_share(self) -> np.ndarray:
        """The floor-curvature term / exact Σλ₋, per 𝒞."""
        return self.floor_term / self.exact


def curvature_probe(
    problem: Problem, floor: Floor, cs: tuple[float, ...], seed: int
) -> CurvatureProbe:
    """Measure the curved floor's first-order term (see :class:`CurvatureProbe`)."""
    cs = CurvedFloorConfig(tuple(cs)).cs
    h_floor = problem.hessian(floor.theta)
    with threads("dense"):
        lam, vec = torch.linalg.eigh(h_floor)
    tol = floor.zero_tol
    null = vec[:, lam.abs() <= tol]
    rng = vec[:, lam > tol]
    gen = torch.Generator(device=problem.device).manual_seed(seed)
    z = torch.randn(rng.shape[1], generator=gen, dtype=DTYPE, device=problem.device)
    u = rng @ (math.sqrt(2) * z)
    step = 1e-4 / u.norm().item()  # a displacement of 1e-4: third-order error ~1e-8 relative

    def derivative(hstep: float) -> Tensor:
        plus = problem.hessian(floor.theta + hstep * u)
        minus = problem.hessian(floor.theta - hstep * u)
        return (plus - minus) / (2 * hstep)

    d1, d2 = derivative(step), derivative(2 * step)
    a1, a2 = null.T @ d1 @ null, null.T @ d2 @ null
    fd_relerr = ((a1 - a2).norm() / a1.norm()).item() if a1.norm() > 0 else 0.0
    with threads("dense"):
        a_eig = torch.linalg.eigvalsh(a1)
    s_a = a_eig[a_eig < 0].sum().item()
    exact, linear, floor_term, excess = [], [], [], []
    for c in cs:
        theta = floor.theta + math.sqrt(c) * u
        exact.append(problem.spectrum(theta).sum_negative())
        with threads("dense"):
            linear.append(spectrum(h_floor + math.sqrt(c) * d1).sum_negative())
        floor_term.append(math.sqrt(c) * s_a)
        excess.append(problem.loss_value(theta) - floor.loss)
    return CurvatureProbe(
        cs=np.array(cs, dtype=np.float64),
        exact=np.array(exact),
        linear=np.array(linear),
        floor_term=np.array(floor_term),
        excess=np.array(excess),
        shape_ratio=(a1.norm() / d1.norm()).item(),
        fd_relerr=fd_relerr,
        null_dim=null.shape[1],
    )


def probe_deviation(probe: CurvatureProbe, sw: Sweep) -> float:
    """max over the SGD runs inside the probe's range of 𝒞 of |⟨Σλ₋⟩/Σλ₋(probe at 𝒞) − 1|, the
    probe interpolated linearly in log–log coordinates (NaN when no run is inside)."""
    lc, ly = np.log(probe.cs), np.log(np.abs(probe.exact))
    devs = [
        abs(r.sum_negative / -np.exp(np.interp(np.log(r.C), lc, ly)) - 1)
        for r in sw.runs
        if probe.cs[0] <= r.C <= probe.cs[-1] and r.sum_negative < 0
    ]
    return float(max(devs)) if devs else float("nan")


@dataclass(frozen=True)
class ProbeAtRuns:
    """The probe read at the noise scales of the SGD runs, [``c_lo``, ``c_hi``]: the shares
    of the exact Σλ₋ that come from the floor's curvature, from the rest of the first-order
    term (non-degenerate directions softer than the displacement), and from higher orders,
    at both ends, and the local log–log slope of |Σλ₋| against the excess loss there."""

    c_lo: float
    c_hi: float
    floor_share_lo: float
    floor_share_hi: float
    soft_share_lo: float
    soft_share_hi: float
    higher_share_lo: float
    higher_share_hi: float
    slope_lo: float
    slope_hi: float


def at_runs(probe: CurvatureProbe, c_lo: float, c_hi: float) -> ProbeAtRuns:
    """Interpolate the probe (linearly in log 𝒞) at the ends of the runs' range of 𝒞."""
    lc = np.log(probe.cs)
    soft = probe.linear_share - probe.floor_share
    higher = 1 - probe.linear_share
    # local slope between consecutive probe points, placed at their geometric midpoints
    slopes = np.diff(np.log(np.abs(probe.exact))) / np.diff(np.log(probe.excess))
    mid = (lc[1:] + lc[:-1]) / 2

    def at(values: np.ndarray, c: float, where: np.ndarray = lc) -> float:
        return float(np.interp(np.log(c), where, values))

    return ProbeAtRuns(
        c_lo=c_lo,
        c_hi=c_hi,
        floor_share_lo=at(probe.floor_share, c_lo),
        floor_share_hi=at(probe.floor_share, c_hi),
        soft_share_lo=at(soft, c_lo),
        soft_share_hi=at(soft, c_hi),
        higher_share_lo=at(higher, c_lo),
        higher_share_hi=at(higher, c_hi),
        slope_lo=at(slopes, c_lo, mid),
        slope_hi=at(slopes, c_hi, mid),
    )
