r"""Chapter "Designing the noise": Theorem 2, Corollary 2.1 and Fig. 2(c)–(d).

On the paper's second toy, SGD's noise (C = κH) and isotropic noise (C = c·1) are run from
the same start with c chosen so that both hold the same stationary training loss
(:func:`hessnoise.drift.matched_isotropic`).  Each run records the trace and the
log-determinant of the non-degenerate block for every replica, and compares the measured
change of its own target (the trace for SGD noise, the log-determinant for isotropic noise)
with Theorem 2's prediction integrated along the trajectory.  :func:`user_function` does the
same for a spectral function supplied by the user, with Theorem 2's designed noise
C_ii = κ λ_i ∂f/∂λ_i.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hessnoise import valley as V
from hessnoise._validate import number, positive_int
from hessnoise.drift import DriftMeasurement, matched_isotropic, measure_drift
from hessnoise.scales import by_scale

TRACKED = {"trace": V.trace_fn, "logdet": V.logdet_fn}


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

    def __post_init__(self) -> None:
        positive_int("replicas", self.replicas)
        positive_int("steps", self.steps)
        positive_int("record_every", self.record_every)
        number("eta", self.eta, lo=0, lo_open=True)
        number("kappa", self.kappa, lo=0, lo_open=True)
        number("user_kappa", self.user_kappa, lo=0, lo_open=True)
        positive_int("user_steps", self.user_steps)
        positive_int("stride", self.stride)

    @classmethod
    def for_scale(cls, scale: str) -> DesigningNoiseConfig:
        return by_scale(
            scale,
            smoke=cls(replicas=1024, steps=1500, kappa=0.008, user_steps=500),
            small=cls(replicas=4096),
            paper=cls(replicas=32768),
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
