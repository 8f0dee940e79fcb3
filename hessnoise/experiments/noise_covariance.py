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
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse.linalg
import torch
from torch import Tensor

from hessnoise._validate import choice, number, positive_int
from hessnoise.curvature import Spectrum
from hessnoise.experiments.floor import DTYPE, Problem
from hessnoise.experiments.negative_eigenvalues import draw_minibatch
from hessnoise.losses import cross_entropy, target_entropy
from hessnoise.stats import Estimate, Interval, line_fit, mean_se
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


# --------------------------------------------------------------------------------------------
# One noise against H
# --------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------
# One state: both noises and eq. 4
# --------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------
# Against actual mini-batch gradients
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MinibatchCheck:
    """The exact noise of one protocol at one state against ``draws`` actual mini-batch
    gradients at batch size S, both normalized as Ĉ.

    ``trace`` and ``trace_ch`` are tr Ĉ and tr(ĈH) by Monte Carlo (mean ± standard error
    over the draws) beside their exact values, ``z_*`` the differences in standard errors;
    ``z_top_max`` the largest |z| of vₖᵀĈvₖ over the ``n_top`` leading directions;
    ``gamma_mc`` and ``gamma_exact`` the exponents fitted over the same directions, and
    ``alignment_mc`` and ``alignment_exact`` the alignments with H.
    """

    label: str
    protocol: str
    batch_size: int
    draws: int
    trace_exact: float
    trace: Estimate
    z_trace: float
    trace_ch_exact: float
    trace_ch: Estimate
    z_trace_ch: float
    n_top: int
    z_top_max: float
    gamma_exact: Interval
    gamma_mc: Interval
    alignment_exact: float
    alignment_mc: float

    @property
    def z_max(self) -> float:
        """The largest |z| of the check."""
        return max(abs(self.z_trace), abs(self.z_trace_ch), self.z_top_max)


def minibatch_gradients(
    problem: Problem, theta: Tensor, batch_size: int, protocol: str, draws: int, seed: int
) -> Tensor:
    """``draws`` mini-batch gradients ``(draws, P)`` at θ: each the autograd gradient of one
    batch's mean loss, the batch drawn as the SGD runs draw it (``'paper'``: S distinct
    samples with their targets q; ``'sampled'``: also a label c ~ q_k for each)."""
    choice("protocol", protocol, NOISES)
    gen = torch.Generator(device=problem.device).manual_seed(seed)
    mode = "minibatch" if protocol == "paper" else "sampled-labels"
    draw = draw_minibatch(problem, batch_size, mode)
    xs, ts = zip(*(draw(gen) for _ in range(draws)), strict=True)
    x, t = torch.stack(xs), torch.stack(ts)
    if t.dtype != DTYPE:  # sampled labels as one-hot targets: the same loss, −log p_c
        t = torch.nn.functional.one_hot(t, problem.q.shape[1]).to(DTYPE)

    def batch_loss(th: Tensor, xb: Tensor, tb: Tensor) -> Tensor:
        return cross_entropy(problem.net(th, xb), tb)

    return torch.vmap(torch.func.grad(batch_loss), in_dims=(None, 0, 0), chunk_size=250)(
        theta, x, t
    )


def minibatch_checks(
    problem: Problem,
    state: PathState,
    batch_sizes: tuple[int, ...],
    draws: int,
    seed: int,
    *,
    lam_cut: float = 1e3,
    n_top: int = 10,
) -> list[MinibatchCheck]:
    """Check both protocols' exact noise at ``state``, at each of ``batch_sizes``, against
    ``draws`` actual mini-batch gradients (see :class:`MinibatchCheck`)."""
    number("draws", draws, lo=10, integer=True)
    ex = exact(problem, state.theta, lam_cut=lam_cut)
    m = problem.n_samples
    grad = torch.func.grad(problem.loss)(state.theta)
    lam = ex.lam.cpu().numpy()
    out = []
    for protocol in NOISES:
        for s in batch_sizes:
            number("batch_size", s, lo=1, hi=m - 1, integer=True)
            sub = zlib.crc32(f"{seed}/{state.label}/{protocol}/{s}".encode())
            with threads("small"):
                g_b = minibatch_gradients(problem, state.theta, s, protocol, draws, sub)
            scale = s / (1 - s / m) if protocol == "paper" else s
            u = (g_b - grad) * math.sqrt(scale)  # rows whose outer products average to Ĉ
            c = ex.noise(protocol, s)
            fit, power = ex.compare(c, ex.rank(protocol))
            fit_mc, power_mc = ex.compare(gram(u) / draws, draws)
            with threads("dense"):
                per_trace = (u * u).sum(1).cpu().numpy()
                per_ch = ((u @ ex.h) * u).sum(1).cpu().numpy()
                proj = ((u @ ex.vec[:, -n_top:]) ** 2).cpu().numpy()
                tr_exact, ch_exact = torch.trace(c).item(), (c * ex.h).sum().item()
            tr, ch = mean_se(per_trace), mean_se(per_ch)
            z_top = (proj.mean(0) - power[-n_top:]) / (proj.std(0, ddof=1) / math.sqrt(draws))
            mask = (lam > ex.cut) & (power > ex.cut) & (power_mc > 0)
            out.append(
                MinibatchCheck(
                    label=state.label, protocol=protocol, batch_size=s, draws=draws,
                    trace_exact=tr_exact, trace=tr, z_trace=(tr.value - tr_exact) / tr.se,
                    trace_ch_exact=ch_exact, trace_ch=ch, z_trace_ch=(ch.value - ch_exact) / ch.se,
                    n_top=n_top, z_top_max=float(np.abs(z_top).max()),
                    gamma_exact=power_law(lam, power, mask)[0],
                    gamma_mc=power_law(lam, power_mc, mask)[0],
                    alignment_exact=fit.alignment, alignment_mc=fit_mc.alignment,
                )
            )  # fmt: skip
    return out
