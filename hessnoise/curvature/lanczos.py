r"""Lanczos with full reorthogonalization: extreme eigenvalues of a symmetric operator.

After m steps from a unit start vector :math:`q_1`, the Lanczos basis :math:`Q_m` and the
tridiagonal :math:`T_m = Q_m^\top A Q_m` give Ritz values (eigenvalues of :math:`T_m`) that
converge first at the two ends of the spectrum (Golub & Van Loan, 2013, §10.1).  Each new
vector is orthogonalized against all previous ones twice ("twice is enough"), so no spurious
copies of converged eigenvalues appear.  The residual :math:`\|A y - \theta y\| = |\beta_m
s_{m}|` of each Ritz pair (:math:`s_m` the last component of its eigenvector in :math:`T_m`)
is returned with it: a Ritz value is within its residual of a true eigenvalue.

Example
-------
>>> import torch
>>> a = torch.diag(torch.linspace(-1, 10, 50, dtype=torch.float64))
>>> ext = extreme_eigenvalues(lambda v: v @ a, 50, k=2, steps=50, seed=0)
>>> [round(x, 6) for x in ext.largest.tolist()], [round(x, 6) for x in ext.smallest.tolist()]
([10.0, 9.77551], [-1.0, -0.77551])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from hessnoise._validate import choice, number, positive_int
from hessnoise.curvature.probes import Matvec, gaussian, generator_from


@dataclass(frozen=True)
class LanczosResult:
    """``alpha`` ``(m,)`` and ``beta`` ``(m-1,)`` of T_m, the basis ``(m, P)``, and the final
    ``beta_m`` (zero at an invariant subspace)."""

    alpha: Tensor
    beta: Tensor
    basis: Tensor
    beta_last: float

    @property
    def steps(self) -> int:
        return self.alpha.numel()

    def tridiagonal(self) -> Tensor:
        """T_m, ``(m, m)`` float64."""
        return torch.diag(self.alpha) + torch.diag(self.beta, 1) + torch.diag(self.beta, -1)

    def ritz(self) -> tuple[Tensor, Tensor]:
        """Ritz values ascending ``(m,)`` and their residual bounds ``(m,)``."""
        theta, s = torch.linalg.eigh(self.tridiagonal())
        return theta, (self.beta_last * s[-1]).abs()


def lanczos(
    matvec: Matvec,
    dim: int,
    steps: int,
    *,
    start: Tensor | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> LanczosResult:
    """Run ``steps`` Lanczos steps (stopping early at an invariant subspace).

    The start vector is ``start`` ``(P,)`` or, with a seed/generator, a normalized Gaussian.
    ``matvec`` is called with one probe at a time, ``(1, P)``.
    """
    positive_int("dim", dim)
    number("steps", steps, lo=1, hi=dim, integer=True)
    if start is None:
        gen, _ = generator_from(seed, generator)
        start = gaussian(1, dim, gen, dtype=dtype, device=device)[0]
    if start.shape != (dim,):
        raise ValueError(f"start must have shape ({dim},); got {tuple(start.shape)}")
    q = start.to(dtype=dtype, device=device)
    q = q / q.norm()
    basis = torch.zeros(steps, dim, dtype=dtype, device=device)
    alpha, beta = [], []
    beta_last = 0.0
    for j in range(steps):
        basis[j] = q
        w = matvec(q.reshape(1, -1))[0]
        a = torch.dot(q, w)
        alpha.append(a.item())
        for _ in range(2):  # full reorthogonalization, twice
            w = w - basis[: j + 1].T @ (basis[: j + 1] @ w)
        b = w.norm().item()
        scale = max(abs(x) for x in alpha) or 1.0
        if b <= 1e-12 * scale:  # invariant subspace: T_m is exact
            beta_last = 0.0
            basis = basis[: j + 1]
            break
        if j < steps - 1:
            beta.append(b)
            q = w / b
        else:
            beta_last = b
    m = len(alpha)
    return LanczosResult(
        torch.tensor(alpha, dtype=torch.float64),
        torch.tensor(beta[: m - 1], dtype=torch.float64),
        basis[:m],
        beta_last,
    )


@dataclass(frozen=True)
class Extremes:
    """The k largest (descending) and k smallest (ascending) Ritz values, with residual bounds."""

    largest: Tensor
    largest_residual: Tensor
    smallest: Tensor
    smallest_residual: Tensor
    n_matvecs: int


def extreme_eigenvalues(
    matvec: Matvec,
    dim: int,
    k: int,
    *,
    steps: int | None = None,
    which: str = "both",
    seed: int | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> Extremes:
    """The k largest and the k most negative eigenvalues by Lanczos (default ``3k + 20`` steps).

    ``which`` (``'both' | 'largest' | 'smallest'``) only selects what is reported; the run is
    the same.  Check the residual bounds before trusting a value.
    """
    positive_int("dim", dim)
    number("k", k, lo=1, hi=dim, integer=True)
    choice("which", which, ("both", "largest", "smallest"))
    steps = min(dim, steps if steps is not None else 3 * k + 20)
    number("steps", steps, lo=k, hi=dim, integer=True)
    res = lanczos(matvec, dim, steps, seed=seed, generator=generator, dtype=dtype, device=device)
    theta, resid = res.ritz()
    kk = min(k, theta.numel())
    empty = torch.empty(0, dtype=torch.float64)
    big = theta.flip(0)[:kk] if which != "smallest" else empty
    big_r = resid.flip(0)[:kk] if which != "smallest" else empty
    small = theta[:kk] if which != "largest" else empty
    small_r = resid[:kk] if which != "largest" else empty
    return Extremes(big, big_r, small, small_r, res.steps)
