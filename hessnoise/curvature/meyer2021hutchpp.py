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

:func:`hutchpp_groups` returns, from the same matvecs, the trace of every diagonal block
:math:`A_{gg}` of a partition of the coordinates into groups, and so of any weighted sum
:math:`\operatorname{tr}(DA)=\sum_g w_g\operatorname{tr}A_{gg}` with :math:`D` constant on
each group: since :math:`P=I-QQ^\top` is a projection, :math:`\operatorname{tr}(DA)=
\operatorname{tr}(Q^\top DAQ)+\operatorname{tr}(PDAP)`, whose first term is exact given
:math:`AQ` and whose second is estimated by :math:`(Pg)^\top D\,A(Pg)`, unbiased given
:math:`Q`.  With all weights one this is Hutch++ itself, probe for probe.

Example
-------
>>> import torch
>>> a = torch.diag(torch.tensor([100.0, 1, 1, 1, 1, 1], dtype=torch.float64))
>>> round(hutchpp(dense_matvec(a), 6, budget=30, seed=0).value, 9)  # sketch spans all: exact
105.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

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

__all__ = ["GroupTraceEstimate", "dense_matvec", "hutchpp", "hutchpp_groups"]


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


@dataclass(frozen=True)
class GroupTraceEstimate:
    """Hutch++ per group of coordinates: ``low_rank`` ``(G,)`` is tr(QᵀD_gAQ), exact given the
    sketch, and ``samples`` ``(m, G)`` the m Hutchinson samples (Pz)ᵀD_g A(Pz) of the remainder,
    D_g the indicator of group g; ``n_matvecs`` and ``seed`` as in
    :class:`~hessnoise.curvature.probes.TraceEstimate`."""

    low_rank: Tensor
    samples: Tensor
    n_matvecs: int
    seed: int

    @property
    def values(self) -> Tensor:
        """tr A_gg per group, ``(G,)`` float64."""
        rest = self.samples.mean(0) if self.samples.shape[0] else 0.0
        return self.low_rank + rest

    def combine(self, weights: Tensor | None = None) -> TraceEstimate:
        """Σ_g w_g tr A_gg (``weights`` ``(G,)``, default all one: tr A) with its standard
        error, from the per-probe sums."""
        w = torch.ones_like(self.low_rank) if weights is None else weights.to(self.low_rank)
        per_probe = self.samples @ w
        m = per_probe.numel()
        if m == 0:  # the sketch spanned the space: the low-rank part is exact
            return TraceEstimate((self.low_rank @ w).item(), 0.0, self.n_matvecs, self.seed)
        se = per_probe.std().item() / math.sqrt(m) if m > 1 else math.inf
        value = (self.low_rank @ w).item() + per_probe.mean().item()
        return TraceEstimate(value, se, self.n_matvecs, self.seed)


def hutchpp_groups(
    matvec: Matvec,
    dim: int,
    labels: Tensor,
    *,
    budget: int,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    block: int = 16,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> GroupTraceEstimate:
    """Hutch++ with ``budget`` matvecs (≥ 3), split over the groups ``labels`` ``(dim,)``
    (integers 0 … G − 1): the same probes, in the same order, as :func:`hutchpp` with this
    budget and seed, so ``combine()`` equals its estimate."""
    positive_int("dim", dim)
    number("budget", budget, lo=3, integer=True)
    positive_int("block", block)
    if labels.shape != (dim,) or labels.dtype != torch.int64 or labels.min() < 0:
        raise ValueError(
            f"labels must be int64 of shape ({dim},) with values 0 … G − 1; got "
            f"{labels.dtype} of shape {tuple(labels.shape)}"
        )
    n_groups = int(labels.max()) + 1
    labels = labels.to(device)
    gen, seed = generator_from(seed, generator)

    def per_group(x: Tensor, ax: Tensor) -> Tensor:  # (k, P), (k, P) → (k, G), float64
        out = torch.zeros(x.shape[0], n_groups, dtype=torch.float64, device=x.device)
        return out.index_add_(1, labels, (x * ax).to(torch.float64)).cpu()

    s = min(budget // 3, dim)
    sketch_probes = rademacher(s, dim, gen, dtype=dtype, device=device)
    q, _ = torch.linalg.qr(matvec(sketch_probes).T)
    low_rank = per_group(q.T, matvec(q.T)).sum(0)
    used = 2 * s
    if s == dim:
        return GroupTraceEstimate(low_rank, torch.zeros(0, n_groups, dtype=torch.float64),
                                  used, seed)  # fmt: skip
    samples, limit = [], max(budget - used, 1)
    n = 0
    while n < limit:
        k = min(block, limit - n)
        g = rademacher(k, dim, gen, dtype=dtype, device=device)
        x = g - (g @ q) @ q.T
        samples.append(per_group(x, matvec(x)))
        n += k
    return GroupTraceEstimate(low_rank, torch.cat(samples), used + n, seed)
