r"""The exact noise of :mod:`hessnoise.experiments.noise_covariance` against actual mini-batch
gradients at one state of the Section 4.1 network: the batches drawn as the SGD runs draw them
(:func:`minibatch_gradients`), their Monte Carlo traces, powers and exponents beside the exact
ones (:func:`minibatch_checks`, :class:`MinibatchCheck`).  The exact matrices are in
:mod:`hessnoise.experiments.noise_matrices`, the fit of a noise against H in
:mod:`hessnoise.experiments.noise_fit`.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from hessnoise._validate import choice, number
from hessnoise.experiments.floor import DTYPE, Problem
from hessnoise.experiments.negative_eigenvalues import draw_minibatch
from hessnoise.experiments.noise_fit import power_law
from hessnoise.experiments.noise_matrices import NOISES, PathState, exact, gram
from hessnoise.losses import cross_entropy
from hessnoise.stats import Estimate, Interval, mean_se
from hessnoise.threads import threads


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
