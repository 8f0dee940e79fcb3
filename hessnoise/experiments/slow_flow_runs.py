r"""The SGD runs of the slow-flow chapter and the checks of its instrument.

From the floor θ* of :mod:`hessnoise.experiments.slow_flow`, sampled-label SGD runs at each
(η, S) of the sweeps, in ``replicas`` independent copies; at the chosen times the state θ_t is
mapped onto the floor twice: by the gradient-flow limit map Φ (the prediction's map) and by
Gauss–Newton directly (the contrast), and tr H is read there.

* :func:`flow_run` — one (η, S): the trace at both maps against τ, the mean displacement along
  the floor, checkpointed (a killed chapter resumes at the next unfinished run, bit for bit);
* :func:`sweep` — every (η, S) of the configuration;
* :func:`static_run` — the paper's protocol (fixed smoothed targets) from θ*: no noise there;
* :func:`invariance` — Φ(GF_t(θ)) = Φ(θ): the map at several flow times t₁;
* :func:`gauss_newton_factor` — Gauss–Newton's move along the floor against the limit map's
  second-order move, for displacements along single eigenvectors of decreasing size.

The fits are in :mod:`hessnoise.experiments.slow_flow_fits`.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from hessnoise import checkpoints, projection, train
from hessnoise.experiments import sweep_design
from hessnoise.experiments.floor import Problem
from hessnoise.experiments.negative_eigenvalues import draw_minibatch
from hessnoise.experiments.slow_flow import Prediction, SlowFlowConfig
from hessnoise.experiments.slow_flow_floor import floor_trace, gauss_newton_to_floor, landing
from hessnoise.losses import cross_entropy
from hessnoise.threads import threads

# Part of every run checkpoint's fingerprint: bump it when what a checkpoint holds changes.
CHECKPOINT_VERSION = 1


def trace_at(problem: Problem, theta: Tensor) -> tuple[Tensor, float]:
    """The floor point Gauss–Newton reaches from θ, and tr H there."""
    land = gauss_newton_to_floor(problem, theta)
    return land.theta, floor_trace(problem, land)


def limit_point(problem: Problem, theta: Tensor, cfg: SlowFlowConfig,
                flow_time: float | None = None) -> projection.LimitPoint:  # fmt: skip
    """Φ(θ) by :func:`hessnoise.projection.limit_map` with the configuration's flow."""
    return projection.limit_map(
        problem.loss, theta, landing(problem),
        flow_time=cfg.flow_time if flow_time is None else flow_time, step=cfg.flow_step,
        project=lambda t: gauss_newton_to_floor(problem, t).theta,
    )  # fmt: skip


@dataclass
class FlowRun:
    """One (η, S): ``replicas`` SGD runs from θ*, mapped onto the floor at ``taus``.

    ``gf`` and ``gn`` are ``(replicas, len(taus) + 1)``: tr H(Φ(θ_τ)) − tr H(θ*) with Φ the
    gradient-flow limit map and with Gauss–Newton, the first column τ = 0 (zero).
    ``displacement`` ``(P,)`` is the replica mean of Φ(θ_τ) − θ* at the last time;
    ``remainder`` and ``landing`` the largest of the limit map's pieces over the run (see
    :class:`~hessnoise.projection.LimitPoint`).  ``predicted`` and ``leading`` are the
    finite-η and leading-order rates d tr H/dτ.
    """

    eta: float
    batch_size: int
    C: float
    taus: np.ndarray
    gf: np.ndarray
    gn: np.ndarray
    displacement: Tensor
    remainder: float
    landing: float
    predicted: float
    leading: float
    resumed: bool = False

    @property
    def times(self) -> np.ndarray:
        """τ including 0, ``(len(taus) + 1,)``."""
        return np.concatenate([[0.0], self.taus])

    def slopes(self, which: str = "gf") -> np.ndarray:
        """The least-squares slope of each replica's trace against τ, ``(replicas,)``."""
        y = self.gf if which == "gf" else self.gn
        return np.polyfit(self.times, y.T, 1)[0]


def _replica_seed(seed: int, eta: float, batch_size: int, replica: int, tag: str = "") -> int:
    return zlib.crc32(f"{seed}/{eta!r}/{batch_size}/{replica}{tag}".encode())


def _sgd_states(problem: Problem, start: Tensor, eta: float, batch_size: int, taus, seed: int,
                protocol: str = "sampled-labels") -> list[Tensor]:  # fmt: skip
    """SGD from ``start`` at (η, S); the states at SGD times ``taus`` (rounded to steps)."""
    at = [max(1, round(t / eta)) for t in taus]

    def batch_loss(theta: Tensor, xb: Tensor, tb: Tensor) -> Tensor:
        return cross_entropy(problem.net(theta, xb), tb)

    def keep(step: int, theta: Tensor) -> dict | None:
        return {"theta": theta.clone()} if step in at else None

    res = train.sgd(batch_loss, start, draw_minibatch(problem, batch_size, protocol), lr=eta,
                    steps=max(at), seed=seed, callback=keep)  # fmt: skip
    return [r["theta"] for r in res.records]


def flow_run(problem: Problem, pred: Prediction, cfg: SlowFlowConfig, eta: float,
             batch_size: int, seed: int, *, taus: tuple[float, ...] | None = None,
             replicas: int | None = None,
             checkpoint_dir: str | Path | None = None) -> FlowRun:  # fmt: skip
    """Run one (η, S) (see :class:`FlowRun`); read back from ``checkpoint_dir`` if done."""
    taus = cfg.taus if taus is None else tuple(taus)
    replicas = replicas or cfg.replicas
    path = None
    if checkpoint_dir is not None:
        path = Path(checkpoint_dir) / f"flow_eta{eta:g}_S{batch_size}_{len(taus)}t.pt"
    # what the run depends on (not the chapter's criteria): a changed tolerance reuses it
    key = checkpoints.fingerprint(
        CHECKPOINT_VERSION, asdict(cfg.floor), cfg.flow_time, cfg.flow_step, seed, eta,
        batch_size, taus, replicas, checkpoints.tensor_hash(pred.theta),
    )  # fmt: skip
    state = checkpoints.load_matching(path, key)
    resumed = state is not None
    if state is None:
        gf = np.zeros((replicas, len(taus) + 1))
        gn = np.zeros((replicas, len(taus) + 1))
        disp = torch.zeros_like(pred.theta)
        remainder = landed = 0.0
        with threads("small"):
            for r in range(replicas):
                states = _sgd_states(problem, pred.theta, eta, batch_size, taus,
                                     _replica_seed(seed, eta, batch_size, r))  # fmt: skip
                for j, theta in enumerate(states):
                    lp = limit_point(problem, theta, cfg)
                    gf[r, j + 1] = trace_at(problem, lp.theta)[1] - pred.trace
                    gn[r, j + 1] = trace_at(problem, theta)[1] - pred.trace
                    remainder, landed = max(remainder, lp.remainder), max(landed, lp.landing)
                disp += (lp.theta - pred.theta) / replicas
        # tensors only: checkpoints load with weights_only
        state = {"fingerprint": key, "gf": torch.from_numpy(gf), "gn": torch.from_numpy(gn),
                 "displacement": disp.cpu(), "remainder": remainder, "landing": landed}  # fmt: skip
        if path is not None:
            checkpoints.save_checkpoint(path, state)
    return FlowRun(
        eta=eta, batch_size=batch_size, C=cfg.noise_scale(eta, batch_size),
        taus=np.asarray(taus, dtype=np.float64), gf=state["gf"].numpy(),
        gn=state["gn"].numpy(), displacement=state["displacement"].to(pred.theta),
        remainder=state["remainder"], landing=state["landing"],
        predicted=pred.rate(eta, batch_size), leading=pred.rate(eta, batch_size, finite=False),
        resumed=resumed,
    )  # fmt: skip


@dataclass
class FlowSweep:
    """The runs of one seed: the η sweep at S = ``batch_size0`` and the S sweep at η = ``eta0``
    (the centre run is the same object in both)."""

    eta_sweep: list[FlowRun]
    batch_sweep: list[FlowRun]

    @property
    def runs(self) -> list[FlowRun]:
        """Every distinct run, the centre once."""
        return sweep_design.distinct(self.eta_sweep, self.batch_sweep)


def sweep(problem: Problem, pred: Prediction, cfg: SlowFlowConfig, seed: int,
          checkpoint_dir: str | Path | None = None) -> FlowSweep:  # fmt: skip
    """Both sweeps of ``cfg`` for one seed."""
    done = {(eta, s): flow_run(problem, pred, cfg, eta, s, seed, checkpoint_dir=checkpoint_dir)
            for eta, s in cfg.runs}  # fmt: skip
    return FlowSweep(*sweep_design.split(cfg, done))


@dataclass(frozen=True)
class StaticRun:
    """The paper's protocol (mini-batches of fixed smoothed targets) started on θ*:
    ``max_displacement`` = max_t |θ_t − θ*| over the window, ``trace_change`` = tr H at the
    floor point below the last state minus tr H(θ*), ``drift`` = trace_change/τ."""

    eta: float
    batch_size: int
    tau: float
    max_sample_grad: float
    max_displacement: float
    trace_change: float

    @property
    def drift(self) -> float:
        return self.trace_change / self.tau


def static_run(problem: Problem, pred: Prediction, cfg: SlowFlowConfig, seed: int) -> StaticRun:
    """SGD with the paper's mini-batches at (η₀, S₀) from θ* for the window (one replica)."""
    eta, s = cfg.eta0, cfg.batch_size0
    taus = [cfg.tau_window * (k + 1) / 10 for k in range(10)]
    with threads("small"):
        states = _sgd_states(problem, pred.theta, eta, s, taus,
                             _replica_seed(seed, eta, s, 0, "/minibatch"), "minibatch")  # fmt: skip
        moved = max((t - pred.theta).norm().item() for t in states)
        change = trace_at(problem, states[-1])[1] - pred.trace
        grad = problem.sample_gradients(pred.theta).norm(dim=1).max().item()
    return StaticRun(eta, s, cfg.tau_window, grad, moved, change)


@dataclass(frozen=True)
class Invariance:
    """tr H(Φ(θ)) − tr H(θ*) for one state θ, with Φ computed after the flow times
    ``flow_times`` = (0, the configured t₁, the reference t₁): ``traces`` and ``remainders``
    (the displacement left to the second-order term) are ``(3,)``."""

    flow_times: np.ndarray
    traces: np.ndarray
    remainders: np.ndarray

    @property
    def error(self) -> float:
        """|map at the configured t₁ − map at the reference t₁|, relative to the latter."""
        return float(abs(self.traces[1] - self.traces[2]) / abs(self.traces[2]))

    @property
    def second_order_error(self) -> float:
        """The same for the second-order term alone (t₁ = 0, no gradient flow)."""
        return float(abs(self.traces[0] - self.traces[2]) / abs(self.traces[2]))


def invariance(problem: Problem, pred: Prediction, cfg: SlowFlowConfig,
               theta: Tensor) -> Invariance:  # fmt: skip
    """The limit map of one state without flow, with the configured flow and with the
    reference flow."""
    times = (0.0, cfg.flow_time, cfg.reference_flow_time)
    traces, rems = [], []
    with threads("small"):
        for t1 in times:
            lp = limit_point(problem, theta, cfg, flow_time=t1)
            traces.append(trace_at(problem, lp.theta)[1] - pred.trace)
            rems.append(lp.remainder)
    return Invariance(np.array(times), np.array(traces), np.array(rems))


def end_state(problem: Problem, pred: Prediction, cfg: SlowFlowConfig, eta: float,
              batch_size: int, seed: int) -> Tensor:  # fmt: skip
    """The state of the first replica of run (η, S) at the end of the window."""
    with threads("small"):
        return _sgd_states(problem, pred.theta, eta, batch_size, [cfg.tau_window],
                           _replica_seed(seed, eta, batch_size, 0))[-1]  # fmt: skip


@dataclass
class GaussNewtonFactor:
    """Gauss–Newton's move along the floor against the limit map's, for θ* + εv_j with v_j
    the eigenvectors of ``lam`` ``(k,)`` and ε in ``eps`` ``(e,)``: ``gn`` and ``limit``
    ``(k, e)`` are the moves of tr H (∇tr H · P_Γ(p − θ*)) over the second-order one,
    ∇tr H · ½∂²Φ[εv_j, εv_j]: → 2 and → 1 as ε → 0."""

    lam: np.ndarray
    eps: np.ndarray
    gn: np.ndarray
    limit: np.ndarray

    def facts(self) -> dict[str, float]:
        """For ``Chapter.record``: the top direction's eigenvalue and Gauss–Newton's ratio at
        the largest ε there."""
        return {"lam_top": float(self.lam[0]), "top_large": float(self.gn[0, 0])}


def gauss_newton_factor(problem: Problem, pred: Prediction, indices: tuple[int, ...],
                        eps: tuple[float, ...]) -> GaussNewtonFactor:  # fmt: skip
    """:class:`GaussNewtonFactor` for the eigenvectors ``indices`` (into the ascending
    non-degenerate spectrum) at the displacements ``eps``."""
    frame = landing(problem)(pred.theta)
    g = pred.tangent_grad
    gn = np.zeros((len(indices), len(eps)))
    lim = np.zeros_like(gn)
    with threads("small"):
        for a, j in enumerate(indices):
            v = frame.normal[:, j]
            for b, e in enumerate(eps):
                second = (g @ projection.second_order_shift(problem.loss, frame, e * v)).item()
                p = gauss_newton_to_floor(problem, pred.theta + e * v).theta
                gn[a, b] = (g @ frame.tangent(p - pred.theta)).item() / second
                phi = projection.limit_map(problem.loss, pred.theta + e * v, landing(problem),
                                           flow_time=0.0, step=1.0).theta  # fmt: skip
                lim[a, b] = (g @ frame.tangent(phi - pred.theta)).item() / second
    return GaussNewtonFactor(frame.lam[list(indices)].cpu().numpy(), np.array(eps), gn, lim)


def series(problem: Problem, pred: Prediction, cfg: SlowFlowConfig, seed: int,
           checkpoint_dir: str | Path | None = None) -> FlowRun:  # fmt: skip
    """The centre run at the denser times ``cfg.series_taus`` (``cfg.series_replicas``)."""
    return flow_run(problem, pred, cfg, cfg.eta0, cfg.batch_size0, seed + 10_000,
                    taus=cfg.series_taus, replicas=cfg.series_replicas,
                    checkpoint_dir=checkpoint_dir)  # fmt: skip
