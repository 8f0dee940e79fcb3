r"""The exact mini-batch noise and the terms of eq. 4 at one state of the Section 4.1 network.

Section 2.1.2 of the paper obtains its noise model, eq. 5, C = (1/S)(1 − S/M)·H, from eq. 4 by
dropping a term.  On a small network every matrix involved is an exact number.  From the
gradients of every label a sample can carry, ∇ℓ_kc = ∇_θ(−log p_c(x_k; θ)) ``(M, K, P)``:

* the per-sample gradients at the smoothed targets, ∇ℓ_k = Σ_c q_kc ∇ℓ_kc, and their
  covariance Cov_k ∇ℓ_k (normalized by M − 1): the paper's mini-batches of S distinct samples
  have exactly C_mb = (1/S)(1 − S/M)·Cov_k ∇ℓ_k;
* F_q = (1/M)Σ_k Σ_c q_kc(∇ℓ_kc − ∇ℓ_k)(∇ℓ_kc − ∇ℓ_k)ᵀ, what sampling a label c ~ q_k per
  sample adds: mini-batches with sampled labels have exactly C_sl = (1/S)[F_q + (1 − S/M)Cov];
* E = (1/M)Σ_k ∇ℓ_k∇ℓ_kᵀ, the first term of eq. 4 as printed, and A = E + F_q, its first term
  for label-smoothed targets (H = A + R₄); G, the Gauss–Newton matrix (H = G + R).

:func:`analyse_state` compares both noises with the exact Hessian at a state and measures the
terms of eq. 4; :func:`minibatch_checks` checks the exact formulas against actual mini-batch
gradients.  Noises are compared *normalized*, Ĉ = C_mb·S/(1 − S/M) and Ĉ = S·C_sl, so that
eq. 5 reads Ĉ = H for both.

The pieces are in sibling modules: the exact matrices in
:mod:`hessnoise.experiments.noise_matrices`, one noise against H in
:mod:`hessnoise.experiments.noise_fit`, the check against mini-batches in
:mod:`hessnoise.experiments.noise_minibatch`; this module compares both noises and eq. 4's
terms at one state, and re-exports the pieces, so that the chapter and the modules built on it
import one name, ``noise_covariance``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from hessnoise._validate import choice, number
from hessnoise.curvature import Spectrum
from hessnoise.experiments.floor import Problem
from hessnoise.experiments.noise_fit import NoiseFit, compare, eq5_holds, power_law
from hessnoise.experiments.noise_matrices import (
    EPS,
    KINDS,
    NOISES,
    Exact,
    NoiseFactors,
    PathState,
    exact,
    gram,
    leading_eigenpairs,
    noise_factors,
)
from hessnoise.experiments.noise_minibatch import (
    MinibatchCheck,
    minibatch_checks,
    minibatch_gradients,
)
from hessnoise.losses import target_entropy
from hessnoise.threads import threads

__all__ = [
    "EPS",
    "KINDS",
    "NOISES",
    "Exact",
    "MinibatchCheck",
    "NoiseFactors",
    "NoiseFit",
    "PathState",
    "StateAnalysis",
    "analyse_state",
    "compare",
    "eq5_holds",
    "exact",
    "gram",
    "leading_eigenpairs",
    "minibatch_checks",
    "minibatch_gradients",
    "noise_factors",
    "power_law",
]


@dataclass
class StateAnalysis:
    """Both noises and eq. 4's terms at one state of the path.

    ``excess`` is L − H(q), the loss above the targets' entropy (the mean KL divergence from
    q to the outputs; zero only where the network interpolates q).  ``paper`` and
    ``sampled`` compare the normalized noises with H (:class:`NoiseFit`); ``alt_ratio`` is
    tr Ĉ_mb/(2·excess·tr H): the paper's noise against C ≈ (2L/S)H with L the excess loss
    (NaN where the paper's noise vanishes).

    Eq. 4: ``second_term_ratio`` = ‖H − E‖_F/‖E‖_F, with E the first term as printed;
    ``soft_second_term_ratio`` = ‖R₄‖_F/‖A‖_F with A = E + F_q, the first term for smoothed
    targets, and R₄ = H − A; ``ggn_residual_ratio`` = ‖H − G‖_F/‖G‖_F; ``sampled_residual`` =
    ‖Ĉ_sl − H‖_F/‖H‖_F.  Negative eigenvalues (below −zero_tol of H; count and sum) of H and
    of R₄, and ``weyl_gap`` = max_i(λ_i(R₄) − λ_i(H))/max|λ(H)|, which A ⪰ 0 makes ≤ 0 up to
    rounding: NaN when only the leading eigenpairs were computed.  ``lam``, ``power_paper``
    and ``power_sampled`` ``(n,)`` are the eigenvalues (ascending) and vₖᵀĈvₖ.
    """

    label: str
    kind: str
    eta: float
    tau: float
    loss: float
    excess: float
    trace: float
    lam_max: float
    cut: float
    paper: NoiseFit
    sampled: NoiseFit
    alt_ratio: float
    second_term_ratio: float
    soft_second_term_ratio: float
    ggn_residual_ratio: float
    sampled_residual: float
    n_negative: float
    sum_negative: float
    soft_n_negative: float
    soft_sum_negative: float
    weyl_gap: float
    lam: np.ndarray = field(repr=False)
    power_paper: np.ndarray = field(repr=False)
    power_sampled: np.ndarray = field(repr=False)

    @property
    def negative_share(self) -> float:
        """Σλ₋(H)/Σλ₋(R₄) ∈ [0, 1]: how much of the second term's negative mass the Hessian
        keeps (NaN when R₄ has none)."""
        return self.sum_negative / self.soft_sum_negative if self.soft_sum_negative else math.nan


def analyse_state(
    problem: Problem,
    state: PathState,
    batch_size: int,
    eps: float,
    *,
    lam_cut: float = 1e3,
    top: int | None = None,
    ex: Exact | None = None,
) -> StateAnalysis:
    """Compare both noises with the exact Hessian at ``state`` and measure eq. 4's terms.

    ``batch_size`` is the S of the sampled-label noise (the paper's normalized noise does not
    depend on it) and ``eps`` the label smoothing; ``top`` computes only the leading
    eigenpairs (then the negative eigenvalues are not measured); ``ex`` reuses
    :func:`exact` at the state."""
    choice("kind", state.kind, KINDS)
    number("batch_size", batch_size, lo=1, hi=problem.n_samples - 1, integer=True)
    ex = ex or exact(problem, state.theta, lam_cut=lam_cut, top=top)
    h = ex.h
    paper, power_p = ex.compare(ex.noise("paper", batch_size), ex.rank("paper"))
    c_sl = ex.noise("sampled", batch_size)
    sampled, power_s = ex.compare(c_sl, ex.rank("sampled"))
    neg = dict.fromkeys(
        ("n_negative", "sum_negative", "soft_n_negative", "soft_sum_negative", "weyl_gap"),
        math.nan,
    )
    with threads("dense"):
        fro_h = h.norm().item()
        a_first = ex.outer + ex.labels
        r4 = h - a_first
        g = gram(ex.factors.ggn)
        ratios = {
            "second_term_ratio": ((h - ex.outer).norm() / ex.outer.norm()).item(),
            "soft_second_term_ratio": (r4.norm() / a_first.norm()).item(),
            "ggn_residual_ratio": ((h - g).norm() / g.norm()).item(),
            "sampled_residual": ((h - c_sl).norm() / fro_h).item(),
        }
        if ex.full:
            tol = ex.cut / lam_cut  # the Hessian's numerical zero P·ε·max|λ|
            sp_h = Spectrum(ex.lam.cpu())
            sp_r = Spectrum(torch.linalg.eigvalsh(r4).cpu())
            neg["n_negative"], neg["sum_negative"] = sp_h.n_negative(tol), sp_h.sum_negative(tol)
            neg["soft_n_negative"] = sp_r.n_negative(tol)
            neg["soft_sum_negative"] = sp_r.sum_negative(tol)
            gap = (sp_r.eigenvalues - sp_h.eigenvalues).max().item()
            neg["weyl_gap"] = gap / sp_h.eigenvalues.abs().max().item()
    excess = ex.loss - target_entropy(eps)
    lam = ex.lam.cpu().numpy()
    return StateAnalysis(
        label=state.label,
        kind=state.kind,
        eta=state.eta,
        tau=state.tau,
        loss=ex.loss,
        excess=excess,
        trace=torch.trace(h).item(),
        lam_max=float(lam.max()),
        cut=ex.cut,
        paper=paper,
        sampled=sampled,
        alt_ratio=math.nan if paper.vanishes else paper.kappa_ratio / (2 * excess),
        **ratios,
        **neg,
        lam=lam,
        power_paper=power_p,
        power_sampled=power_s,
    )
