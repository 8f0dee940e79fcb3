r"""The exact matrices of eq. 4 and 5 at one state θ of the Section 4.1 network: the Hessian
with its eigenpairs, the per-sample and per-label gradients, and the factors of Cov_k ∇ℓ_k,
E, F_q and the Gauss–Newton matrix G (see :mod:`hessnoise.experiments.noise_covariance` for
what each is and why).

:func:`exact` builds them at a :class:`PathState`'s θ; :meth:`Exact.compare` compares a noise
with the Hessian through :func:`hessnoise.experiments.noise_fit.compare`.  The analysis of a
state is in :mod:`hessnoise.experiments.noise_covariance`, the check against actual mini-batch
gradients in :mod:`hessnoise.experiments.noise_minibatch`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse.linalg
import torch
from torch import Tensor

from hessnoise._validate import number, positive_int
from hessnoise.experiments.floor import Problem
from hessnoise.experiments.noise_fit import NoiseFit, compare
from hessnoise.threads import threads

NOISES = ("paper", "sampled")
KINDS = ("descent", "floor", "sgd")
EPS = torch.finfo(torch.float64).eps


@dataclass
class PathState:
    """A state θ ``(P,)`` and where it comes from: ``kind`` in :data:`KINDS`; for SGD states
    the learning rate, and the SGD time τ = ηt since the floor (NaN otherwise); ``steps`` taken
    to reach it."""

    label: str
    kind: str
    theta: Tensor
    eta: float = math.nan
    tau: float = math.nan
    steps: int = 0


# --------------------------------------------------------------------------------------------
# The matrices at one θ
# --------------------------------------------------------------------------------------------
@dataclass
class NoiseFactors:
    r"""Factors X ``(rows, P)`` of the matrices of eq. 4 and 5 at one θ, each XᵀX:

    * ``cov``: rows (∇ℓ_k − ∇L)/√(M − 1); XᵀX = Cov_k ∇ℓ_k;
    * ``outer``: rows ∇ℓ_k/√M; XᵀX = E;
    * ``labels``: rows √(q_kc/M)(∇ℓ_kc − ∇ℓ_k); XᵀX = F_q = (1/M)Σ_k J_kᵀ(diag q_k − q_kq_kᵀ)J_k,
      with J_k the Jacobian of the logits;
    * ``ggn``: rows √(p_kc/M)∇ℓ_kc; XᵀX = G = (1/M)Σ_k J_kᵀ(diag p_k − p_kp_kᵀ)J_k, because
      Σ_c p_kc∇ℓ_kc = 0.

    ``grads`` ``(M, P)`` are the per-sample gradients ∇ℓ_k at the targets q.
    """

    grads: Tensor
    cov: Tensor
    outer: Tensor
    labels: Tensor
    ggn: Tensor


def noise_factors(problem: Problem, theta: Tensor) -> NoiseFactors:
    """The factors of :class:`NoiseFactors` at θ, from the class gradients ``(M, K, P)``."""
    gc = problem.class_gradients(theta)
    m, k, p = gc.shape
    q = problem.q
    with torch.no_grad():
        prob = problem.outputs(theta).softmax(-1)
    grads = (q.unsqueeze(-1) * gc).sum(1)
    labels = (q / m).sqrt().unsqueeze(-1) * (gc - grads.unsqueeze(1))
    ggn = (prob / m).sqrt().unsqueeze(-1) * gc
    return NoiseFactors(
        grads=grads,
        cov=(grads - grads.mean(0)) / math.sqrt(m - 1),
        outer=grads / math.sqrt(m),
        labels=labels.reshape(m * k, p),
        ggn=ggn.reshape(m * k, p),
    )


def gram(x: Tensor) -> Tensor:
    """XᵀX ``(P, P)`` for a factor ``(rows, P)``."""
    return x.T @ x


def leading_eigenpairs(h: Tensor, k: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """The k largest eigenpairs of a dense symmetric ``h`` by ARPACK's Lanczos
    (``scipy.sparse.linalg.eigsh``), ascending: ``(k,)`` and ``(P, k)``, on h's device."""
    positive_int("k", k)
    a = h.cpu().numpy()
    v0 = np.random.default_rng(seed).standard_normal(a.shape[0])
    lam, vec = scipy.sparse.linalg.eigsh(a, k=k, which="LA", v0=v0)
    order = np.argsort(lam)
    return (torch.from_numpy(lam[order]).to(h.device, h.dtype),
            torch.from_numpy(vec[:, order].copy()).to(h.device, h.dtype))  # fmt: skip


@dataclass
class Exact:
    """The exact Hessian at θ with its eigenpairs (all, ascending, or the ``top`` leading
    ones), the noise factors, and the dense Cov, E and F_q ``(P, P)``; ``cut`` is the level
    below which an eigenvalue or a noise power counts as rounding (``lam_cut`` times the
    Hessian's numerical zero P·ε·max|λ|)."""

    theta: Tensor
    loss: float
    h: Tensor
    lam: Tensor
    vec: Tensor
    factors: NoiseFactors
    cov: Tensor
    outer: Tensor
    labels: Tensor
    cut: float

    @property
    def full(self) -> bool:
        """Whether every eigenpair was computed."""
        return self.lam.numel() == self.h.shape[0]

    def noise(self, noise: str, batch_size: int) -> Tensor:
        """The dense normalized noise Ĉ ``(P, P)``: ``'paper'``: C_mb·S/(1 − S/M) = Cov;
        ``'sampled'``: S·C_sl = F_q + (1 − S/M)·Cov."""
        if noise == "paper":
            return self.cov
        m = self.factors.grads.shape[0]
        return self.labels + (1 - batch_size / m) * self.cov

    def rank(self, noise: str) -> int:
        """The rank bound of Ĉ: M − 1 for the paper's noise, M·K for sampled labels."""
        m = self.factors.grads.shape[0]
        return m - 1 if noise == "paper" else self.factors.labels.shape[0]

    def compare(self, c: Tensor, rank: int) -> tuple[NoiseFit, np.ndarray]:
        """:func:`compare` a dense normalized noise with this Hessian."""
        return compare(c, self.h, self.lam, self.vec, self.cut, rank)


def exact(
    problem: Problem, theta: Tensor, *, lam_cut: float = 1e3, top: int | None = None
) -> Exact:
    """The exact matrices at θ (see :class:`Exact`); ``top`` computes only the leading
    eigenpairs, for networks whose full eigendecomposition does not fit the time budget."""
    number("lam_cut", lam_cut, lo=1)
    f = noise_factors(problem, theta)
    h = problem.hessian(theta)
    with threads("dense"):
        if top is None:
            lam, vec = torch.linalg.eigh(h)
            lam_abs = lam.abs().max().item()
        else:
            number("top", top, lo=3, hi=problem.n_params - 1, integer=True)
            lam, vec = leading_eigenpairs(h, top)
            lam_abs = max(lam.abs().max().item(), leading_eigenpairs(-h, 1)[0].abs().item())
        cov, outer, labels = gram(f.cov), gram(f.outer), gram(f.labels)
    return Exact(
        theta=theta,
        loss=problem.loss_value(theta),
        h=h,
        lam=lam,
        vec=vec,
        factors=f,
        cov=cov,
        outer=outer,
        labels=labels,
        cut=lam_cut * h.shape[0] * EPS * lam_abs,
    )
