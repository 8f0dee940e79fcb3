r"""The training path of the chapter on SGD noise (Sec. 2.1.2–2.1.3, eq. 4, 5, 10, 11).

Theorem 1 assumes that the mini-batch noise is aligned with the Hessian (eq. 5) and that the
non-degenerate directions relax much faster than the valley floor changes (Section 2.1.3).
This module produces the states at which the chapter tests both on the network of Section
4.1, and runs the exact comparison of :mod:`hessnoise.experiments.noise_covariance` along
them:

* :func:`descent`: full-batch gradient descent from the initialization, recorded where the
  loss first falls below chosen levels;
* the floor θ* of :mod:`hessnoise.experiments.floor`, shared with the other chapters;
* :func:`sgd_states`: SGD with sampled labels from the floor (the noise that realizes eq. 5
  there), equilibrated and then recorded, checkpointed;
* :func:`second_network`: the paper's 196-30-10 network along the start of its descent, where
  the chapter's main network is the smaller one;
* :func:`summary`: the ranges and verdict inputs the chapter states.

The relaxation times of Section 2.1.3 are in :mod:`hessnoise.experiments.timescales`.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor

from hessnoise import checkpoints, train
from hessnoise._validate import choice, number, numbers, positive_int
from hessnoise.experiments.floor import DTYPE, Floor, FloorConfig, Problem, setup
from hessnoise.experiments.negative_eigenvalues import draw_minibatch
from hessnoise.experiments.noise_covariance import (
    KINDS,
    NOISES,
    PathState,
    StateAnalysis,
    analyse_state,
    eq5_holds,
)
from hessnoise.losses import cross_entropy, target_entropy
from hessnoise.scales import by_scale
from hessnoise.threads import threads

# Part of every SGD checkpoint's fingerprint: bump it when what a checkpoint holds changes.
CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class SecondNetwork:
    """The paper's 196-30-10 network where it is not the chapter's main one: its data and
    network (``floor``), the gradient descent that takes it through ``levels`` of excess loss,
    and ``top``, how many leading eigenpairs of each Hessian to compute (``None``: all)."""

    floor: FloorConfig
    gd_lr: float
    gd_steps: int
    levels: tuple[float, ...]
    top: int | None = None


@dataclass(frozen=True)
class SGDNoiseConfig:
    """The chapter's experiment.

    The *descent* is full-batch gradient descent from the initialization at ``gd_lr`` for at
    most ``gd_steps`` steps, recorded where the excess loss L − H(q) first falls below each of
    ``levels`` (decreasing).  At the floor, SGD with sampled labels runs at batch size
    ``batch_size`` for each learning rate in ``sgd_etas``: it equilibrates for SGD time
    τ = ηt = ``tau_equil`` and is then recorded ``sgd_states`` times, ``tau_between`` apart.
    ``batch_size`` is also the S of the exact noise formulas.  ``mc_batch_sizes`` and
    ``mc_draws`` set the check against actual mini-batch gradients.  Exponents γ are fitted
    over the directions with λ above ``lam_cut`` times the Hessian's numerical zero.
    ``separation``: a direction counts as relaxed when its relaxation time is shorter than the
    drift time divided by this factor.  ``second`` is the paper's network when it is not
    ``floor`` (``None`` at paper scale, where it is).
    """

    floor: FloorConfig
    batch_size: int
    gd_lr: float
    gd_steps: int
    levels: tuple[float, ...]
    sgd_etas: tuple[float, ...]
    tau_equil: float
    sgd_states: int
    tau_between: float
    mc_batch_sizes: tuple[int, ...]
    mc_draws: int
    lam_cut: float = 1e3
    separation: float = 10.0
    second: SecondNetwork | None = None
    checkpoint_every: int = 5000

    def __post_init__(self) -> None:
        number("batch_size", self.batch_size, lo=1, hi=self.floor.n - 1, integer=True)
        number("gd_lr", self.gd_lr, lo=0, lo_open=True)
        positive_int("gd_steps", self.gd_steps)
        numbers("levels", self.levels, lo=0, lo_open=True)
        if list(self.levels) != sorted(set(self.levels), reverse=True):
            raise ValueError(f"levels={self.levels!r} must be strictly decreasing")
        numbers("sgd_etas", self.sgd_etas, lo=0, lo_open=True)
        number("tau_equil", self.tau_equil, lo=0, lo_open=True)
        positive_int("sgd_states", self.sgd_states)
        number("tau_between", self.tau_between, lo=0, lo_open=True)
        numbers("mc_batch_sizes", self.mc_batch_sizes, lo=1, hi=self.floor.n - 1, integer=True)
        number("mc_draws", self.mc_draws, lo=10, integer=True)
        number("lam_cut", self.lam_cut, lo=1)
        number("separation", self.separation, lo=1)

    @classmethod
    def for_scale(cls, scale: str) -> SGDNoiseConfig:
        """``smoke``: the 970-parameter network, a short path.  ``small``: the 1,450-parameter
        network of the negative-eigenvalue chapter, and the paper's 196-30-10 network on 500
        Fashion-MNIST images at 14×14 along the start of its descent (its 50 leading
        eigenpairs).  ``paper``: Section 4.1's network (6,220 parameters, 500 MNIST images),
        descended as the paper does, by gradient descent at learning rate 0.1."""
        smoke_second = SecondNetwork(
            FloorConfig(dataset="fashion-mnist", n=40, size=14, hidden=6),
            gd_lr=0.5, gd_steps=200, levels=(1.0,), top=20,
        )  # fmt: skip
        small_second = SecondNetwork(
            FloorConfig(dataset="fashion-mnist", n=500, size=14, hidden=30,
                        expected_params=6220),
            gd_lr=0.5, gd_steps=600, levels=(0.5,), top=50,
        )  # fmt: skip
        return by_scale(
            scale,
            smoke=cls(
                floor=FloorConfig.for_scale("smoke"), batch_size=10, gd_lr=0.5, gd_steps=600,
                levels=(1.0, 0.3, 0.1), sgd_etas=(0.05, 0.1), tau_equil=20, sgd_states=1,
                tau_between=5, mc_batch_sizes=(5,), mc_draws=400, second=smoke_second,
            ),
            small=cls(
                floor=FloorConfig.for_scale("small"), batch_size=10, gd_lr=0.5, gd_steps=4000,
                levels=(1.0, 0.3, 0.1, 0.03, 0.01), sgd_etas=(0.025, 0.05, 0.1),
                tau_equil=100, sgd_states=2, tau_between=10, mc_batch_sizes=(5, 10, 25),
                mc_draws=2000, second=small_second,
            ),
            paper=cls(
                floor=FloorConfig.for_scale("paper"), batch_size=50, gd_lr=0.1,
                gd_steps=10_000, levels=(1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001),
                sgd_etas=(0.01, 0.025, 0.1), tau_equil=100, sgd_states=3, tau_between=10,
                mc_batch_sizes=(10, 50, 250), mc_draws=4000,
            ),
        )  # fmt: skip

    @property
    def kappa(self) -> float:
        """κ = (1/S)(1 − S/M) of eq. 5 at the chapter's batch size."""
        return (1 - self.batch_size / self.floor.n) / self.batch_size


# --------------------------------------------------------------------------------------------
# The states: descent, floor, SGD at the floor
# --------------------------------------------------------------------------------------------
def descent(
    problem: Problem, lr: float, steps: int, levels: tuple[float, ...], eps: float
) -> list[PathState]:
    """Full-batch gradient descent from ``problem.theta_init`` at ``lr`` for at most ``steps``
    steps, with the initialization and the first state below each excess loss in ``levels``
    (L − H(q), decreasing); levels not reached within ``steps`` are left out.  Plain gradient
    descent has no state besides θ, so running from level to level is one run."""
    h_q = target_entropy(eps)
    theta = problem.theta_init
    out = [PathState("init", "descent", theta)]
    used = 0
    with threads("small"):
        for level in levels:
            if used >= steps:
                break
            fit = train.gradient_descent(
                problem.loss, theta, lr=lr, steps=steps - used, until=h_q + level
            )
            if fit.loss > h_q + level:
                break
            used += len(fit.history) - 1  # the last evaluation is the stopping test, no step
            theta = fit.theta
            out.append(PathState(f"GD {level:g}", "descent", theta, steps=used))
    return out


def sgd_states(
    problem: Problem,
    floor: Floor,
    cfg: SGDNoiseConfig,
    seed: int,
    checkpoint_dir: str | Path | None = None,
) -> list[PathState]:
    """SGD with sampled labels from the floor θ* at each η of ``cfg.sgd_etas`` (batch size
    ``cfg.batch_size``): after the equilibration window, ``cfg.sgd_states`` states
    ``cfg.tau_between`` apart in SGD time.  Each run is checkpointed in ``checkpoint_dir``."""
    s = cfg.batch_size
    draw = draw_minibatch(problem, s, "sampled-labels")

    def batch_loss(theta: Tensor, xb: Tensor, tb: Tensor) -> Tensor:
        return cross_entropy(problem.net(theta, xb), tb)

    out = []
    for eta in cfg.sgd_etas:
        between = math.ceil(cfg.tau_between / eta)
        equil = math.ceil(math.ceil(cfg.tau_equil / eta) / between) * between
        steps = equil + cfg.sgd_states * between

        def callback(step: int, theta: Tensor, equil: int = equil) -> dict | None:
            return {"theta": theta.cpu()} if step > equil else None

        path = None
        if checkpoint_dir is not None:
            path = Path(checkpoint_dir) / f"sampled_eta{eta:g}_S{s}.pt"
        key = checkpoints.fingerprint(
            CHECKPOINT_VERSION, asdict(cfg.floor), seed, eta, s, equil, between, steps,
            checkpoints.tensor_hash(floor.theta),
        )  # fmt: skip
        with threads("small"):
            res = train.sgd(
                batch_loss, floor.theta, draw, lr=eta, steps=steps,
                seed=zlib.crc32(f"sgd_noise/{seed}/{eta!r}/{s}".encode()), callback=callback,
                every=between, checkpoint=path, checkpoint_every=cfg.checkpoint_every,
                fingerprint=key,
            )  # fmt: skip
        for rec in res.records:
            theta = rec["theta"].to(problem.device, DTYPE)
            out.append(
                PathState(f"SGD η={eta:g} τ={eta * rec['step']:.0f}", "sgd", theta, eta=eta,
                          tau=eta * rec["step"], steps=rec["step"])
            )  # fmt: skip
    return out


def training_path(
    problem: Problem,
    floor: Floor,
    cfg: SGDNoiseConfig,
    seed: int,
    checkpoint_dir: str | Path | None = None,
) -> list[PathState]:
    """The descent (:func:`descent`), the floor θ*, and SGD with sampled labels at the floor
    (:func:`sgd_states`), in that order."""
    states = descent(problem, cfg.gd_lr, cfg.gd_steps, cfg.levels, cfg.floor.eps)
    states.append(PathState("floor", "floor", floor.theta))
    return states + sgd_states(problem, floor, cfg, seed, checkpoint_dir)


# --------------------------------------------------------------------------------------------
# Analysis along the path
# --------------------------------------------------------------------------------------------
def analyse_path(
    problem: Problem, states: list[PathState], cfg: SGDNoiseConfig
) -> list[StateAnalysis]:
    """:func:`~hessnoise.experiments.noise_covariance.analyse_state` at every state, at the
    chapter's batch size."""
    return [
        analyse_state(problem, s, cfg.batch_size, cfg.floor.eps, lam_cut=cfg.lam_cut)
        for s in states
    ]


def second_network(
    second: SecondNetwork, batch_size: int, seed: int, device: torch.device | str, lam_cut: float
) -> tuple[Problem, list[StateAnalysis]]:
    """The paper's 196-30-10 network along the start of its descent: both noises and eq. 4's
    terms at the initialization and at each level reached, with its ``top`` leading
    eigenpairs."""
    problem = setup(second.floor, seed, device)
    expected = second.floor.expected_params
    if expected is not None and problem.n_params != expected:
        raise ValueError(
            f"second.floor builds {problem.n_params} parameters; expected_params={expected}"
        )
    states = descent(problem, second.gd_lr, second.gd_steps, second.levels, second.floor.eps)
    analyses = [
        analyse_state(problem, s, batch_size, second.floor.eps, lam_cut=lam_cut, top=second.top)
        for s in states
    ]
    return problem, analyses


def by_kind(states: list[StateAnalysis], kind: str) -> list[StateAnalysis]:
    """The analysed states of one kind (:data:`KINDS`), in path order."""
    choice("kind", kind, KINDS)
    return [s for s in states if s.kind == kind]


def summary(states: list[StateAnalysis]) -> dict[str, float | int | bool]:
    """What the chapter states about the path, per kind of state (descent, SGD at the floor)
    and noise: the ranges of the alignment, tr Ĉ/tr H and γ, whether eq. 5 holds at every
    state (:func:`eq5_holds`) and at how many, the ranges of the excess loss, of the paper's
    noise against C ≈ (2L/S)H, of eq. 4's ratios and of the negative eigenvalues; the noises
    and eq. 4 at the floor (``at_floor_*``); the largest Weyl gap."""
    out: dict[str, float | int | bool] = {}
    for kind in ("descent", "sgd"):
        group = by_kind(states, kind)
        for noise in NOISES:
            fits = [getattr(s, noise) for s in group]
            key = f"{kind}_{noise}"
            for name, values in (
                ("alignment", [f.alignment for f in fits]),
                ("kappa", [f.kappa_ratio for f in fits]),
                ("gamma", [f.gamma.value for f in fits]),
                ("scatter", [f.scatter for f in fits]),
            ):
                out[f"{key}_{name}_min"], out[f"{key}_{name}_max"] = min(values), max(values)
            out[f"{key}_eq5"] = all(eq5_holds(f) for f in fits)
            out[f"{key}_eq5_states"] = sum(eq5_holds(f) for f in fits)
        for name in ("excess", "alt_ratio", "second_term_ratio", "soft_second_term_ratio",
                     "ggn_residual_ratio"):  # fmt: skip
            values = [getattr(s, name) for s in group]
            out[f"{kind}_{name}_min"], out[f"{kind}_{name}_max"] = min(values), max(values)
        paper = [s.paper.kappa_ratio for s in group]
        alt = [s.alt_ratio for s in group]
        # how far, in decades, the paper's noise is from each model of its size
        out[f"{kind}_eq5_decades_max"] = max(abs(math.log10(k)) for k in paper)
        out[f"{kind}_alt_decades_max"] = max(abs(math.log10(a)) for a in alt)
        out[f"{kind}_count"] = len(group)
    at_floor = by_kind(states, "floor")[0]
    out["at_floor_paper_kappa"] = at_floor.paper.kappa_ratio
    out["at_floor_paper_vanishes"] = at_floor.paper.vanishes
    out["at_floor_sampled_residual"] = at_floor.sampled_residual
    out["at_floor_second_term_ratio"] = at_floor.second_term_ratio
    out["at_floor_soft_second_term_ratio"] = at_floor.soft_second_term_ratio
    sgd = by_kind(states, "sgd")
    out["sgd_negative_share_min"] = min(s.negative_share for s in sgd)
    out["sgd_negative_share_max"] = max(s.negative_share for s in sgd)
    out["sgd_n_negative_min"] = min(int(s.n_negative) for s in sgd)
    out["sgd_n_negative_max"] = max(int(s.n_negative) for s in sgd)
    out["sgd_soft_n_negative_min"] = min(int(s.soft_n_negative) for s in sgd)
    out["sgd_soft_n_negative_max"] = max(int(s.soft_n_negative) for s in sgd)
    out["weyl_gap_max"] = max(s.weyl_gap for s in states)
    return out


def reference(states: list[StateAnalysis], eta: float) -> StateAnalysis:
    """The last analysed SGD state at learning rate ``eta``: the chapter's reference state
    near the floor."""
    found = [s for s in states if s.kind == "sgd" and s.eta == eta]
    if not found:
        etas = sorted({s.eta for s in states if s.kind == "sgd"})
        raise ValueError(f"eta={eta!r} has no SGD state; choose one of {etas}")
    return found[-1]


def state_rows(states: list[StateAnalysis]) -> list[dict[str, float | str | bool]]:
    """One plain record per state, for the results file."""
    rows = []
    for s in states:
        row: dict[str, float | str | bool] = {"label": s.label, "kind": s.kind}
        for name in ("eta", "tau", "loss", "excess", "trace", "lam_max", "alt_ratio",
                     "second_term_ratio", "soft_second_term_ratio", "ggn_residual_ratio",
                     "sampled_residual", "n_negative", "sum_negative", "soft_n_negative",
                     "soft_sum_negative"):  # fmt: skip
            row[name] = getattr(s, name)
        for noise in NOISES:
            fit = getattr(s, noise)
            values = {
                "alignment": fit.alignment, "kappa": fit.kappa_ratio, "gamma": fit.gamma.value,
                "gamma_lo": fit.gamma.lo, "gamma_hi": fit.gamma.hi, "n_fit": fit.n_fit,
                "ceiling": fit.ceiling, "eq5": eq5_holds(fit),
            }  # fmt: skip
            row.update({f"{noise}_{k}": v for k, v in values.items()})
        rows.append(row)
    return rows


def headline(ref: StateAnalysis) -> dict[str, object]:
    """The issue's headline metrics, for the paper's noise at the reference state near the
    floor: ``alignment``, ``kappa_eff_ratio`` (κ_eff·S/(1 − S/M)), ``gamma`` (an interval)
    and eq. 4's ``second_term_ratio``; and what the chapter says about that state (``ref_*``
    when recorded with that prefix)."""
    return {
        "alignment": ref.paper.alignment,
        "kappa_eff_ratio": ref.paper.kappa_ratio,
        "gamma": ref.paper.gamma,
        "second_term_ratio": ref.second_term_ratio,
    }


def reference_facts(ref: StateAnalysis) -> dict[str, object]:
    """The reference state's label, excess loss and both noises' other numbers."""
    return {
        "label": ref.label,
        "excess": ref.excess,
        "alt_ratio": ref.alt_ratio,
        "paper_ceiling": ref.paper.ceiling,
        "paper_scatter": ref.paper.scatter,
        "paper_n_fit": ref.paper.n_fit,
        "sampled_alignment": ref.sampled.alignment,
        "sampled_kappa": ref.sampled.kappa_ratio,
        "sampled_gamma": ref.sampled.gamma,
    }


def second_facts(
    problem: Problem, states: list[StateAnalysis], cfg: FloorConfig, top: int | None
) -> dict[str, object]:
    """What the chapter states about the paper's network along its descent: size, data,
    states, eigenpairs used (``top``, all when ``None``) and the ranges of the paper's
    noise and of eq. 4's ratio."""
    fits = [s.paper for s in states]
    ratios = [s.second_term_ratio for s in states]
    return {
        "n_params": problem.n_params,
        "n": cfg.n,
        "dataset": cfg.dataset,
        "states": len(states),
        "top": problem.n_params if top is None else top,
        "alignment_min": min(f.alignment for f in fits),
        "alignment_max": max(f.alignment for f in fits),
        "kappa_min": min(f.kappa_ratio for f in fits),
        "kappa_max": max(f.kappa_ratio for f in fits),
        "second_term_min": min(ratios),
        "second_term_max": max(ratios),
    }
