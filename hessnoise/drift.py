r"""Measuring how noise moves a toy valley's spectrum, against theory.

:func:`measure_drift` runs R replicas of (heavy-ball) SGD on a toy valley from the exact
stationary state at θ̂₀, optionally equilibrates, and then, over the measured steps, records

* the change Δf of a spectral function f(λ) for every replica,
* the theoretical prediction for that change, integrated along the replica's own trajectory:
  the exact finite-η rate (eq. 11 without truncation, or its heavy-ball version) and the
  leading-order rate (Theorem 2: −η²κ‖∇̂f‖²/4(1−β)² for C = κλ∂f/∂λ),
* the time average of θ_i² over its exact stationary value (eq. 11 / eq. 14),
* optionally, trajectories of any spectral functions every ``record_every`` steps.

It is the measuring instrument of the chapters on Theorem 1 and Theorem 2.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor

from hessnoise import valley as V
from hessnoise._validate import number, positive_int
from hessnoise.threads import threads


@dataclass
class DriftMeasurement:
    """What :func:`measure_drift` saw.  Per spectral function (keyed by name) and replica:
    ``delta``, ``predicted``, ``predicted_leading`` ``(R,)``; ``eta_lam_max`` ``(R,)``;
    ``theta_sq_ratio``, ``theta_sq``, ``lam`` ``(R, n)`` are window means;
    ``trajectory[name]`` is ``(K, R)`` at ``record_steps`` ``(K,)`` (step 0 is the start of the
    measured window)."""

    delta: dict[str, Tensor]
    predicted: dict[str, Tensor]
    predicted_leading: dict[str, Tensor]
    theta_sq_ratio: Tensor
    theta_sq: Tensor
    lam: Tensor
    eta_lam_max: Tensor
    steps: int
    record_steps: Tensor = field(default_factory=lambda: torch.zeros(0))
    trajectory: dict[str, Tensor] = field(default_factory=dict)


@threads("small")
def measure_drift(
    valley: V.Valley,
    noise: V.Noise,
    theta_hat0: tuple[float, ...] | Tensor,
    eta: float | Tensor,
    *,
    replicas: int,
    steps: int,
    fs: Mapping[str, V.SpectralFn] | None = None,
    equil_steps: int = 0,
    beta: float = 0.0,
    stride: int = 10,
    record: Mapping[str, V.SpectralFn] | None = None,
    record_every: int | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> DriftMeasurement:
    """Measure Δf for each spectral function of ``fs`` (default: the trace) over ``steps``
    steps after ``equil_steps``, with its predictions.

    ``theta_hat0`` is one start ``(m,)`` or one per replica ``(replicas, m)``; ``eta`` is one
    learning rate, or one per replica ``(replicas,)``.  The predicted rates
    are evaluated every ``stride`` steps (they change slowly) and integrated.  The replicas
    live on ``device`` (random streams differ between devices); results come back on the CPU.
    """
    fs = dict(fs or {"trace": V.trace_fn})
    positive_int("replicas", replicas)
    positive_int("steps", steps)
    number("equil_steps", equil_steps, lo=0, integer=True)
    positive_int("stride", stride)
    if record is not None:
        positive_int("record_every", record_every)
    device = torch.device(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    theta_hat = V.replicas(theta_hat0, replicas, device)
    eta_r = torch.as_tensor(eta, dtype=V.DTYPE, device=device).expand(replicas).clone()
    eta_col = eta_r.reshape(-1, 1)
    theta, v = V.stationary_state(valley, noise, theta_hat, eta_col, beta, gen)
    state = V.SGDState(theta, theta_hat, v)
    if equil_steps:
        V.run(valley, noise, state, eta_r, equil_steps, beta=beta, generator=gen)
    lam_start = valley.eigenvalues(state.theta_hat)
    predicted = {k: torch.zeros_like(eta_r) for k in fs}
    leading = {k: torch.zeros_like(eta_r) for k in fs}
    ratio = th2 = lam_sum = 0.0
    eta_lam_max = torch.zeros_like(eta_r)
    frames: dict[str, list[Tensor]] = {name: [] for name in record or {}}
    marks: list[int] = []
    for s in V.sgd(valley, noise, state, eta_r, steps, beta=beta, generator=gen):
        ratio = ratio + s.theta**2 / V.theta_sq(s.lam, noise.covariance(s.lam), eta_col, beta)
        th2 = th2 + s.theta**2
        lam_sum = lam_sum + s.lam
        eta_lam_max = torch.maximum(eta_lam_max, eta_r * s.lam.max(-1).values)
        if s.t % stride == 0:
            span = min(stride, steps - s.t)
            for k, f in fs.items():
                exact, lead = V.drift_rates(valley, noise, s.theta_hat, eta_r, f, beta=beta)
                predicted[k] += span * exact
                leading[k] += span * lead
        if record is not None and s.t % record_every == 0:
            marks.append(s.t)
            for name, g in record.items():
                frames[name].append(g(s.lam))
    lam_end = valley.eigenvalues(state.theta_hat)
    if record is not None:
        marks.append(steps)
        for name, g in record.items():
            frames[name].append(g(lam_end))

    def cpu(t: Tensor) -> Tensor:
        return t.detach().cpu()

    return DriftMeasurement(
        delta={k: cpu(f(lam_end) - f(lam_start)) for k, f in fs.items()},
        predicted={k: cpu(v) for k, v in predicted.items()},
        predicted_leading={k: cpu(v) for k, v in leading.items()},
        theta_sq_ratio=cpu(ratio / steps),
        theta_sq=cpu(th2 / steps),
        lam=cpu(lam_sum / steps),
        eta_lam_max=cpu(eta_lam_max),
        steps=steps,
        record_steps=torch.tensor(marks),
        trajectory={k: cpu(torch.stack(v)) for k, v in frames.items()},
    )


def stationary_loss(lam: Tensor, cov: Tensor, eta: float, beta: float = 0.0) -> Tensor:
    """⟨L⟩ = ½ Σ λ_i ⟨θ_i²⟩ in the exact stationary state, ``(R,)``."""
    return 0.5 * (lam * V.theta_sq(lam, cov, eta, beta)).sum(-1)


def matched_isotropic(
    valley: V.Valley, kappa: float, theta_hat0: tuple[float, ...] | Tensor, eta: float
) -> float | Tensor:
    r"""The isotropic noise level c whose stationary loss at θ̂₀ equals that of C = κH.

    To leading order ⟨L⟩ = ηκT/4 for C = κH and ηcn/4 for C = c·1, so c = κT/n: the same
    total noise power tr C.  Here the exact finite-η stationary loss is matched:
    c = κ Σλ_i/(2−ηλ_i) / Σ 1/(2−ηλ_i).  For starts ``(R, m)`` it returns one c per start,
    ``(R, 1)``.
    """
    number("kappa", kappa, lo=0, lo_open=True)
    th = torch.as_tensor(theta_hat0, dtype=V.DTYPE)
    lam = valley.eigenvalues(th.reshape(-1, th.shape[-1]))
    w = 1 / (2 - eta * lam)
    c = kappa * (lam * w).sum(-1, keepdim=True) / w.sum(-1, keepdim=True)
    return c if th.ndim == 2 else c.item()


def loss_efficiency(
    valley: V.Valley, noise: V.Noise, f: V.SpectralFn, theta_hat: Tensor, eta: float
) -> Tensor:
    r"""How fast a noise lowers f per unit of training loss it costs, to leading order, ``(R,)``.

    ⟨Δf⟩ per step divided by the stationary excess loss ⟨L⟩ − L* = (η/4) Σ_j C_jj:
    −η Σ_j (C_jj/λ_j) ∇̂f·∇̂λ_j / Σ_j C_jj.  Of two noises at equal training loss, the one
    with the more negative efficiency lowers f faster.
    """
    lam = valley.eigenvalues(theta_hat)
    _, leading = V.drift_rates(valley, noise, theta_hat, eta, f)
    return leading / (eta / 4 * noise.covariance(lam).sum(-1))
