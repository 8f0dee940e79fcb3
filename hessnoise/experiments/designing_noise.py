r"""Chapter "Designing the noise": Theorem 2, Corollary 2.1 and Fig. 2(c)–(d).

On the paper's second toy, SGD's noise (C = κH) and isotropic noise (C = c·1) are run from
the same start with c chosen so that both hold the same stationary training loss
(:func:`hessnoise.drift.matched_isotropic`).  Each run records the trace and the
log-determinant of the non-degenerate block for every replica, and compares the measured
change of its own target (the trace for SGD noise, the log-determinant for isotropic noise)
with Theorem 2's prediction integrated along the trajectory.  :func:`user_function` does the
same for a spectral function supplied by the user, with Theorem 2's designed noise
C_ii = κ λ_i ∂f/∂λ_i.

Fig. 2(c)–(d) compares the two noises at one start.  :func:`grid_race` repeats the comparison
at a lattice of starts fixed in advance (:func:`start_lattice`), to say how often the paper's
outcome holds and how often the efficiency proposition
(:func:`hessnoise.drift.loss_efficiency`) predicts the winner at starts nobody chose.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from hessnoise import valley as V
from hessnoise._validate import number, positive_int
from hessnoise.drift import DriftMeasurement, loss_efficiency, matched_isotropic, measure_drift
from hessnoise.scales import by_scale
from hessnoise.stats import Estimate, mean_se, z_between

TRACKED = {"trace": V.trace_fn, "logdet": V.logdet_fn}
NOISES = ("SGD", "isotropic")
# The lattice of starts, in the toy's own coordinates s = θ̂₁ + θ̂₂ (λ₁ = 2(4 − 2e^{−s})) and
# d = θ̂₁ − θ̂₂ (λ₂ = 2e^{−d²}); fixed before any outcome was seen.  λ₁ vanishes at
# s = −log 2 and SGD noise drives s down, so s starts well above that.
LATTICE_S = (0.1, 0.5, 0.9, 1.3)
LATTICE_D = (0.25, 0.75, 1.25, 1.75)


@dataclass(frozen=True)
class DesigningNoiseConfig:
    """The race of Fig. 2(c)–(d) (``steps`` steps at learning rate ``eta``, SGD noise scale
    ``kappa``, start ``theta_hat0``) and the user-function check (``user_steps`` steps with
    designed-noise scale ``user_kappa``)."""

    replicas: int
    steps: int = 3000
    record_every: int = 50
    eta: float = 0.1
    kappa: float = 0.004
    theta_hat0: tuple[float, float] = (0.5, -0.5)
    user_kappa: float = 0.001
    user_steps: int = 1000
    stride: int = 10
    grid_replicas: int = 1024
    early_steps: int = 300

    def __post_init__(self) -> None:
        positive_int("replicas", self.replicas)
        positive_int("steps", self.steps)
        positive_int("record_every", self.record_every)
        number("eta", self.eta, lo=0, lo_open=True)
        number("kappa", self.kappa, lo=0, lo_open=True)
        number("user_kappa", self.user_kappa, lo=0, lo_open=True)
        positive_int("user_steps", self.user_steps)
        positive_int("stride", self.stride)
        positive_int("grid_replicas", self.grid_replicas)
        if self.early_steps % self.record_every or self.early_steps >= self.steps:
            raise ValueError(
                f"early_steps={self.early_steps} must be a multiple of record_every="
                f"{self.record_every} and below steps={self.steps}"
            )

    @classmethod
    def for_scale(cls, scale: str) -> DesigningNoiseConfig:
        return by_scale(
            scale,
            smoke=cls(replicas=1024, steps=1500, kappa=0.008, user_steps=500, grid_replicas=256),
            small=cls(replicas=4096),
            paper=cls(replicas=32768, grid_replicas=8192),
        )


def race(
    cfg: DesigningNoiseConfig, seed: int, device: torch.device | str = "cpu"
) -> dict[str, tuple[V.Noise, DriftMeasurement]]:
    """SGD noise and loss-matched isotropic noise from the same start on the second toy.

    Returns, per noise, the noise and its measurement, with the changes of the trace and of
    the log-determinant each measured and predicted.
    """
    valley = V.logdet_toy()
    c = matched_isotropic(valley, cfg.kappa, cfg.theta_hat0, cfg.eta)
    runs = {
        "SGD noise, C = κH": V.HessianNoise(cfg.kappa),
        "isotropic noise, C = c·1": V.IsotropicNoise(c),
    }
    out = {}
    for k, (name, noise) in enumerate(runs.items()):
        m = measure_drift(
            valley,
            noise,
            cfg.theta_hat0,
            cfg.eta,
            replicas=cfg.replicas,
            steps=cfg.steps,
            fs=TRACKED,
            stride=cfg.stride,
            record=TRACKED,
            record_every=cfg.record_every,
            seed=seed + k,
            device=device,
        )
        out[name] = (noise, m)
    return out


def user_function(
    f: V.SpectralFn, cfg: DesigningNoiseConfig, seed: int, device: torch.device | str = "cpu"
) -> tuple[V.DesignedNoise, DriftMeasurement]:
    """Theorem 2 for a user's f: designed noise C_ii = κ λ_i ∂f/∂λ_i, Δf measured and predicted."""
    noise = V.DesignedNoise(f, cfg.user_kappa)
    m = measure_drift(
        V.logdet_toy(),
        noise,
        cfg.theta_hat0,
        cfg.eta,
        replicas=cfg.replicas,
        steps=cfg.user_steps,
        fs={"f": f},
        stride=cfg.stride,
        seed=seed,
        device=device,
    )
    return noise, m


def efficiencies(cfg: DesigningNoiseConfig, theta_hat0: tuple[float, float]) -> dict:
    """{(f, noise): ⟨Δf⟩ per step / η(⟨L⟩ − L*)} at a start, to leading order, for f in
    :data:`TRACKED` and the two noises of the race (:func:`hessnoise.drift.loss_efficiency`);
    more negative is faster at equal training loss."""
    toy = V.logdet_toy()
    th = V.replicas(theta_hat0, 1)
    iso = V.IsotropicNoise(matched_isotropic(toy, cfg.kappa, theta_hat0, cfg.eta))
    noises = {"SGD": V.HessianNoise(cfg.kappa), "isotropic": iso}
    return {
        (fname, nname): loss_efficiency(toy, noise, f, th, cfg.eta).item()
        for fname, f in TRACKED.items()
        for nname, noise in noises.items()
    }


def predicted_winner(eff: dict) -> dict[str, str]:
    """The noise that the efficiency proposition says lowers each f faster: {f: noise}."""
    return {f: min(NOISES, key=lambda n: eff[f, n]) for f in TRACKED}


@dataclass(frozen=True)
class Outcome:
    """The race at one start over one horizon: the mean change of each f under each noise
    (``delta[f][noise]``, an :class:`Estimate` over replicas), and the distance between the
    noises in standard errors: ``z_trace`` > 0 when SGD noise lowers the trace more,
    ``z_logdet`` > 0 when isotropic noise lowers log Det more."""

    delta: dict[str, dict[str, Estimate]]
    z_trace: float
    z_logdet: float

    @property
    def paper_outcome(self) -> bool:
        """Fig. 2(c)–(d): SGD noise lowers the trace more and isotropic noise log Det."""
        return self.z_trace > 0 and self.z_logdet > 0

    def winner(self, f: str) -> str:
        """The noise whose mean change of f is lower."""
        return min(NOISES, key=lambda n: self.delta[f][n].value)


def outcome(changes: dict[str, dict[str, torch.Tensor]]) -> Outcome:
    """An :class:`Outcome` from per-replica changes ``changes[f][noise]`` ``(R,)``."""
    delta = {f: {n: mean_se(changes[f][n].numpy()) for n in NOISES} for f in TRACKED}
    return Outcome(
        delta=delta,
        z_trace=z_between(delta["trace"]["isotropic"], delta["trace"]["SGD"]),
        z_logdet=z_between(delta["logdet"]["SGD"], delta["logdet"]["isotropic"]),
    )


def race_outcome(race: dict[str, tuple[V.Noise, DriftMeasurement]]) -> Outcome:
    """The :class:`Outcome` of :func:`race` over its whole run."""
    (_, sgd), (_, iso) = race.values()
    return outcome({f: {"SGD": sgd.delta[f], "isotropic": iso.delta[f]} for f in TRACKED})


def theory_gaps(race: dict[str, tuple[V.Noise, DriftMeasurement]]) -> dict[str, float]:
    """|measured/exact − 1| of the mean change, per noise and f, keyed ``"<noise>_<f>"``
    with noise ``sgd`` or ``iso``."""
    out = {}
    for key, (_, m) in zip(("sgd", "iso"), race.values(), strict=True):
        for f in TRACKED:
            out[f"{key}_{f}"] = abs(m.delta[f].mean().item() / m.predicted[f].mean().item() - 1)
    return out


def start_lattice() -> list[tuple[float, float]]:
    """The starts of :func:`grid_race`: the lattice :data:`LATTICE_S` × :data:`LATTICE_D` in
    s = θ̂₁ + θ̂₂ and d = θ̂₁ − θ̂₂, as (θ̂₁, θ̂₂)."""
    return [((s + d) / 2, (s - d) / 2) for s, d in itertools.product(LATTICE_S, LATTICE_D)]


@dataclass(frozen=True)
class GridStart:
    """One start of the grid: the outcome after ``early_steps`` and after the whole run, and
    the winner per f that the efficiency proposition predicts from the start alone."""

    theta_hat0: tuple[float, float]
    early: Outcome
    late: Outcome
    predicted: dict[str, str]

    def predictions_right(self, horizon: str) -> int:
        """How many of the two winners (trace, log Det) the proposition got right."""
        out = self.early if horizon == "early" else self.late
        return sum(out.winner(f) == self.predicted[f] for f in TRACKED)


@dataclass(frozen=True)
class GridSummary:
    """The grid in numbers: over ``starts`` starts, at how many the paper's outcome holds
    (after ``early_steps`` and after ``steps``), and how many of the 2·starts winners the
    efficiency proposition predicted."""

    starts: int
    early_steps: int
    steps: int
    paper_early: int
    paper_late: int
    predicted_early: int
    predicted_late: int
    comparisons: int

    @property
    def paper_fraction(self) -> float:
        return self.paper_late / self.starts

    @property
    def prediction_fraction(self) -> float:
        return self.predicted_late / self.comparisons


def grid_race(
    cfg: DesigningNoiseConfig, seed: int, device: torch.device | str = "cpu"
) -> list[GridStart]:
    """Race SGD noise against loss-matched isotropic noise at every start of
    :func:`start_lattice`, ``grid_replicas`` replicas each, all starts advanced together."""
    valley, starts = V.logdet_toy(), start_lattice()
    r = cfg.grid_replicas
    theta_hat0 = torch.tensor(starts, dtype=V.DTYPE).repeat_interleave(r, 0)
    c = matched_isotropic(valley, cfg.kappa, theta_hat0, cfg.eta)
    noises = {"SGD": V.HessianNoise(cfg.kappa), "isotropic": V.IsotropicNoise(c.to(device))}
    early = cfg.early_steps // cfg.record_every
    traj: dict[str, dict[str, torch.Tensor]] = {}
    for k, (name, noise) in enumerate(noises.items()):
        m = measure_drift(
            valley, noise, theta_hat0, cfg.eta, replicas=len(starts) * r, steps=cfg.steps,
            fs={"trace": V.trace_fn}, stride=cfg.steps, record=TRACKED,
            record_every=cfg.record_every, seed=seed + k, device=device,
        )  # fmt: skip
        traj[name] = {f: m.trajectory[f].reshape(-1, len(starts), r) for f in TRACKED}
    grid = []
    for j, start in enumerate(starts):

        def change(step: int, j: int = j) -> dict[str, dict[str, torch.Tensor]]:
            return {f: {n: traj[n][f][step, j] - traj[n][f][0, j] for n in NOISES} for f in TRACKED}

        predicted = predicted_winner(efficiencies(cfg, start))
        grid.append(GridStart(start, outcome(change(early)), outcome(change(-1)), predicted))
    return grid


def summarize_grid(grid: list[GridStart], cfg: DesigningNoiseConfig) -> GridSummary:
    """Count the outcomes and the right predictions of :func:`grid_race`."""
    return GridSummary(
        starts=len(grid),
        early_steps=cfg.early_steps,
        steps=cfg.steps,
        paper_early=sum(g.early.paper_outcome for g in grid),
        paper_late=sum(g.late.paper_outcome for g in grid),
        predicted_early=sum(g.predictions_right("early") for g in grid),
        predicted_late=sum(g.predictions_right("late") for g in grid),
        comparisons=2 * len(grid),
    )
