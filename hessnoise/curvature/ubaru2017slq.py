r"""Stochastic Lanczos quadrature (Ubaru, Chen & Saad, 2017; Ghorbani et al., 2019).

For a unit random vector :math:`v`, m Lanczos steps from :math:`v` give a Gauss quadrature of
the spectral measure seen by :math:`v`: nodes :math:`\theta_k` (Ritz values) and weights
:math:`\tau_k^2` (squared first components of the eigenvectors of :math:`T_m`), with

.. math::  v^\top f(A) v \approx \sum_k \tau_k^2 f(\theta_k).

Averaging over :math:`n_v` random vectors estimates the spectral density
:math:`\phi(t) = \frac1P \sum_i \delta(t-\lambda_i)`, which :meth:`SLQ.density` smooths with a
Gaussian of width σ, and :math:`\operatorname{tr} f(A) \approx P \cdot \text{mean}_v \sum_k
\tau_k^2 f(\theta_k)`.

Example
-------
>>> import torch
>>> a = torch.diag(torch.arange(20, dtype=torch.float64))
>>> q = slq(lambda v: v @ a, 20, n_vectors=4, steps=20, seed=0)
>>> round(q.trace_of(lambda t: t), 6)  # 20 steps on a 20-dim space is exact for each vector
190.0
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from hessnoise._validate import number, positive_int
from hessnoise.curvature.lanczos import lanczos
from hessnoise.curvature.probes import Matvec, generator_from, rademacher


@dataclass(frozen=True)
class SLQ:
    """Quadrature nodes and weights, ``(n_vectors, m)`` each (zero-padded), for a ``dim``-sized
    operator, and the matvecs used."""

    nodes: Tensor
    weights: Tensor
    dim: int
    n_matvecs: int
    seed: int

    def density(self, grid: Tensor, sigma: float) -> Tensor:
        """The spectral density smoothed by a Gaussian of width ``sigma`` on ``grid``
        ``(G,)``; integrates to one."""
        number("sigma", sigma, lo=0, lo_open=True)
        t = grid.reshape(1, 1, -1).to(torch.float64)
        kern = torch.exp(-0.5 * ((t - self.nodes.unsqueeze(-1)) / sigma) ** 2)
        kern = kern / (sigma * math.sqrt(2 * math.pi))
        return (self.weights.unsqueeze(-1) * kern).sum(1).mean(0)

    def trace_of(self, f: Callable[[Tensor], Tensor]) -> float:
        """tr f(A) ≈ P · mean over vectors of Σ_k τ_k² f(θ_k)."""
        return (self.dim * (self.weights * f(self.nodes)).sum(1).mean()).item()


def slq(
    matvec: Matvec,
    dim: int,
    *,
    n_vectors: int,
    steps: int,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> SLQ:
    """Run ``n_vectors`` Lanczos quadratures of ``steps`` steps from Rademacher vectors."""
    positive_int("dim", dim)
    positive_int("n_vectors", n_vectors)
    number("steps", steps, lo=1, hi=dim, integer=True)
    gen, seed = generator_from(seed, generator)
    nodes = torch.zeros(n_vectors, steps, dtype=torch.float64)
    weights = torch.zeros(n_vectors, steps, dtype=torch.float64)
    used = 0
    for i in range(n_vectors):
        start = rademacher(1, dim, gen, dtype=dtype, device=device)[0]
        res = lanczos(matvec, dim, steps, start=start, dtype=dtype, device=device)
        theta, s = torch.linalg.eigh(res.tridiagonal())
        m = theta.numel()
        nodes[i, :m] = theta
        weights[i, :m] = s[0] ** 2
        used += m
    return SLQ(nodes, weights, dim, used, seed)
