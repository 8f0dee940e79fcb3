r"""Hutchinson's trace estimator with Rademacher probes (Hutchinson, 1989).

.. math::
    \operatorname{tr}(A) \approx \frac1m \sum_{j=1}^m z_j^\top A z_j, \qquad z_j \in \{\pm1\}^P,

unbiased, with variance :math:`2(\|A\|_F^2 - \sum_i A_{ii}^2)/m`.  The standard error is the
sample standard deviation of the :math:`z_j^\top A z_j` over :math:`\sqrt m`.  Stopping is
either a fixed budget of matvecs or a target standard error, checked after each block of
probes, never a rule that the running mean "stopped changing".

Example
-------
>>> import torch
>>> a = torch.diag(torch.arange(1.0, 6.0, dtype=torch.float64))
>>> est = hutchinson(dense_matvec(a), 5, budget=64, seed=0)
>>> est.value  # diagonal matrices are estimated exactly by Rademacher probes
15.0
"""

from __future__ import annotations

import torch

from hessnoise._validate import positive_int
from hessnoise.curvature.probes import (
    Matvec,
    TraceEstimate,
    check_budget,
    dense_matvec,
    generator_from,
    rademacher,
    sample_until,
)

__all__ = ["dense_matvec", "hutchinson", "quadratic_forms"]


def quadratic_forms(matvec: Matvec, probes: torch.Tensor) -> torch.Tensor:
    """``z_jᵀ A z_j`` for each row of ``probes`` ``(k, P)``, in float64, ``(k,)``."""
    return (probes * matvec(probes)).sum(-1).to(torch.float64)


def hutchinson(
    matvec: Matvec,
    dim: int,
    *,
    budget: int | None = None,
    target_se: float | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    block: int = 16,
    max_matvecs: int = 100_000,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> TraceEstimate:
    """Estimate tr(A) from ``budget`` Rademacher probes, or until the standard error is at most
    ``target_se`` (at least two blocks, at most ``max_matvecs``).  Probes go ``block`` at a time."""
    positive_int("dim", dim)
    check_budget(budget, target_se)
    positive_int("block", block)
    positive_int("max_matvecs", max_matvecs)
    gen, seed = generator_from(seed, generator)
    limit = budget if budget is not None else max_matvecs

    def draw(k: int) -> torch.Tensor:
        return quadratic_forms(matvec, rademacher(k, dim, gen, dtype=dtype, device=device))

    q, se, converged = sample_until(draw, limit, target_se, block)
    return TraceEstimate(q.mean().item(), se, q.numel(), seed, converged)
