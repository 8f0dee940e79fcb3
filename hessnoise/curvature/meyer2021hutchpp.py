r"""Hutch++ (Meyer, Musco, Musco & Woodruff, 2021).

Split the trace into a low-rank part, computed exactly on a sketch, and a remainder estimated
by Hutchinson on the deflated operator:

.. math::
    \operatorname{tr}(A) = \operatorname{tr}(Q^\top A Q)
      + \operatorname{tr}\big((I-QQ^\top) A (I-QQ^\top)\big),\qquad Q = \operatorname{orth}(AS),

with :math:`S` a ``(P, s)`` Rademacher sketch.  With a budget of m matvecs, s = m/3 goes to
:math:`AS`, m/3 to :math:`AQ`, and m/3 to the Hutchinson probes, as in Algorithm 1 of the
paper.  With a target standard error, the sketch has ``sketch`` columns and Hutchinson probes
are added until the standard error of the remainder is small enough.  The standard error is
conditional on the sketch: the low-rank part carries no sampling error given :math:`Q`.

When a few eigenvalues dominate (the Hessians of trained networks, with their outliers), the
remainder is small and Hutch++ beats Hutchinson at an equal number of matvecs.

Example
-------
>>> import torch
>>> a = torch.diag(torch.tensor([100.0, 1, 1, 1, 1, 1], dtype=torch.float64))
>>> round(hutchpp(dense_matvec(a), 6, budget=30, seed=0).value, 9)  # sketch spans all: exact
105.0
"""

from __future__ import annotations

import torch

from hessnoise._validate import number, positive_int
from hessnoise.curvature.hutchinson1989 import quadratic_forms
from hessnoise.curvature.probes import (
    Matvec,
    TraceEstimate,
    check_budget,
    dense_matvec,
    generator_from,
    rademacher,
    sample_until,
)

__all__ = ["dense_matvec", "hutchpp"]


def hutchpp(
    matvec: Matvec,
    dim: int,
    *,
    budget: int | None = None,
    target_se: float | None = None,
    sketch: int | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    block: int = 16,
    max_matvecs: int = 100_000,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> TraceEstimate:
    """Estimate tr(A) with Hutch++ from ``budget`` matvecs (≥ 3), or until the standard error
    is at most ``target_se`` with a sketch of ``sketch`` columns (default ``2 * block``)."""
    positive_int("dim", dim)
    check_budget(budget, target_se)
    positive_int("block", block)
    if budget is not None:
        number("budget", budget, lo=3, integer=True)
        s = budget // 3
    else:
        s = sketch if sketch is not None else 2 * block
        positive_int("sketch", s)
    gen, seed = generator_from(seed, generator)
    s = min(s, dim)
    sketch_probes = rademacher(s, dim, gen, dtype=dtype, device=device)
    q, _ = torch.linalg.qr(matvec(sketch_probes).T)  # (dim, s), orthonormal columns
    low_rank = (q.T * matvec(q.T)).sum().to(torch.float64).item()
    used = 2 * s
    if s == dim:  # the sketch spans the space: the low-rank part is the whole trace
        return TraceEstimate(low_rank, 0.0, used, seed)

    def draw(k: int) -> torch.Tensor:  # Hutchinson on (I − QQᵀ) A (I − QQᵀ)
        g = rademacher(k, dim, gen, dtype=dtype, device=device)
        return quadratic_forms(matvec, g - (g @ q) @ q.T)

    limit = budget - used if budget is not None else max_matvecs - used
    rest, se, converged = sample_until(draw, limit, target_se, block)
    return TraceEstimate(low_rank + rest.mean().item(), se, used + rest.numel(), seed, converged)
