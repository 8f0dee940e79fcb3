r"""The protocol of Section 2.1.1, step by step: SGD with every epoch saved and replay,
projection onto a minimum, line connectedness and the recursive refinement.

* :func:`train` — SGD with momentum, the full state (θ, momentum buffer, next data order,
  generator) saved after every epoch; :func:`sgd_state` replays any iteration bit for bit.
* :func:`project` — full-batch gradient descent with the same η and μ until the training loss
  is below H(q) + δ, within a budget; cached under a fingerprint of what it depends on.
* :func:`segment` — the losses at 10 evenly spaced points between two projections, in one
  batched call.
* :func:`refine` — the recursive insertion of midpoints, as a plain algorithm over two
  callables (so that it can be tested on a case where the answer is known).

Every function is θ in, θ out; the only state is in the checkpoint files.  Everything runs on
one thread: the full-batch passes are many small convolutions, which a second thread on a
shared machine slows down, and a fixed thread count keeps the arithmetic, and hence a resumed
run, bit-identical.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor

from hessnoise import checkpoints
from hessnoise.experiments.path_problem import PathConfig, Problem, data_key
from hessnoise.threads import threads

N_POINTS = 10  # points per segment in the line-connectedness test (Section 2.1.1)
# Part of every checkpoint's fingerprint: bump it when what a checkpoint holds changes.
CHECKPOINT_VERSION = 1


@contextmanager
def deterministic(device: torch.device) -> Iterator[None]:
    """cuDNN's deterministic algorithms for the block (bit-identical replay on a GPU), the
    caller's settings restored afterwards; nothing changes on the CPU."""
    if device.type != "cuda":
        yield
        return
    before = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before


# --------------------------------------------------------------------------------------------
# SGD with every epoch saved, and replay
# --------------------------------------------------------------------------------------------
def sgd_steps(
    problem: Problem,
    cfg: PathConfig,
    theta: Tensor,
    velocity: Tensor,
    order: Tensor,
    start: int,
    stop: int,
) -> tuple[Tensor, Tensor]:
    r"""Iterations ``start … stop−1`` of one epoch whose data order is ``order`` ``(N,)``:
    mini-batch i is ``order[iS:(i+1)S]``, and
    :math:`v \leftarrow \mu v + \nabla L^{B}(\theta),\ \theta \leftarrow \theta - \eta v`
    (PyTorch's convention).  θ in, θ out; nothing else is read or written."""
    s = cfg.batch_size
    with threads("small"):
        for i in range(start, stop):
            th = theta.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(problem.batch_loss(th, order[i * s : (i + 1) * s]), th)
            velocity = cfg.momentum * velocity + g
            theta = theta.detach() - cfg.lr * velocity
    return theta, velocity


@dataclass
class EpochState:
    """The full SGD state at the end of an epoch (the start of the next): θ and the momentum
    buffer ``velocity`` ``(P,)``, the next epoch's data ``order`` ``(N,)``, the CPU generator's
    state after drawing it, the full-batch training and validation losses above H(q), and the
    wall time the epoch took.  Tensors are kept on the CPU (a paper-scale run holds 151 of
    them); computations move them to the problem's device."""

    epoch: int
    theta: Tensor
    velocity: Tensor
    order: Tensor
    generator: Tensor
    train_excess: float
    val_excess: float
    seconds: float = 0.0


def _epoch_file(folder: Path, epoch: int) -> Path:
    return folder / "sgd" / f"epoch{epoch:04d}.pt"


def _save_epoch(folder: Path, key: str, st: EpochState) -> None:
    checkpoints.save_checkpoint(_epoch_file(folder, st.epoch), {**asdict(st), "fingerprint": key})


def _load_epoch(folder: Path, key: str, epoch: int) -> EpochState | None:
    state = checkpoints.load_matching(_epoch_file(folder, epoch), key)
    if state is None:
        return None
    state.pop("fingerprint")
    return EpochState(**state)


def _on(st: EpochState, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    return st.theta.to(device), st.velocity.to(device), st.order.to(device)


def sgd_key(problem: Problem, cfg: PathConfig, seed: int, theta0: Tensor) -> str:
    """Fingerprint of an SGD run: what the trajectory depends on."""
    fields = ("model", "batch_norm", "conv", "eps", "lr", "momentum", "batch_size", "dtype")
    return checkpoints.fingerprint(
        CHECKPOINT_VERSION, "sgd", {f: getattr(cfg, f) for f in fields}, seed,
        data_key(problem), checkpoints.tensor_hash(theta0),
    )  # fmt: skip


def train(
    problem: Problem,
    cfg: PathConfig,
    seed: int,
    folder: str | Path,
    *,
    theta0: Tensor | None = None,
    epochs: int | None = None,
    stop_below: float | None = None,
) -> list[EpochState]:
    """SGD for ``epochs`` (default ``cfg.epochs``) epochs from ``theta0`` (default the
    initialization) with zero momentum, saving the state after every epoch in
    ``folder/sgd``; a rerun resumes after the last saved epoch.  With ``stop_below`` it stops
    after the first epoch whose training loss is below H(q) + ``stop_below``.  Returns the
    states of epochs 0 … E (θ₀ first)."""
    folder = Path(folder)
    dev = problem.device
    theta0 = problem.theta_init if theta0 is None else theta0
    epochs = cfg.epochs if epochs is None else epochs
    key = sgd_key(problem, cfg, seed, theta0)
    states = []
    gen = torch.Generator()
    with deterministic(dev):
        for epoch in range(epochs + 1):
            st = _load_epoch(folder, key, epoch)
            if st is None:
                t0 = time.perf_counter()
                if epoch == 0:
                    gen.manual_seed(seed)
                    theta, velocity = theta0.detach().clone(), torch.zeros_like(theta0)
                else:
                    gen.set_state(states[-1].generator)
                    theta, velocity = sgd_steps(problem, cfg, *_on(states[-1], dev), 0,
                                                cfg.iters_per_epoch)  # fmt: skip
                order = torch.randperm(problem.n_samples, generator=gen)
                with threads("small"):
                    train_ex, val_ex = (problem.excess(theta), problem.excess(theta, val=True))
                st = EpochState(epoch, theta.cpu(), velocity.cpu(), order, gen.get_state(),
                                train_ex, val_ex, time.perf_counter() - t0)  # fmt: skip
                _save_epoch(folder, key, st)
            states.append(st)
            if stop_below is not None and epoch > 0 and st.train_excess < stop_below:
                break
    return states


def sgd_state(problem: Problem, cfg: PathConfig, states: list[EpochState], step: int) -> Tensor:
    """θ after ``step`` SGD iterations, replayed from the last saved epoch before it with that
    epoch's data order: bit-identical to the state the original run passed through."""
    epoch, rest = divmod(step, cfg.iters_per_epoch)
    theta, velocity, order = _on(states[epoch], problem.device)
    if rest == 0:
        return theta
    with deterministic(problem.device):
        theta, _ = sgd_steps(problem, cfg, theta, velocity, order, 0, rest)
    return theta


def replay_matches(problem: Problem, cfg: PathConfig, states: list[EpochState], epoch: int) -> bool:
    """Whether replaying epoch ``epoch`` from the state saved before it reproduces the saved
    state, θ and momentum buffer, bit for bit."""
    saved = states[epoch]
    with deterministic(problem.device):
        theta, velocity = sgd_steps(problem, cfg, *_on(states[epoch - 1], problem.device), 0,
                                    cfg.iters_per_epoch)  # fmt: skip
    return torch.equal(theta.cpu(), saved.theta) and torch.equal(velocity.cpu(), saved.velocity)


# --------------------------------------------------------------------------------------------
# Projection onto a minimum
# --------------------------------------------------------------------------------------------
@dataclass
class Projection:
    """The projection of the SGD state at iteration ``step``: the point θ ``(P,)`` where
    gradient descent stopped, its training and validation losses above H(q), the number of
    descent steps, whether it reached the threshold, the loss it started from, the wall time
    it took when it was computed, and how far it moved the state, ‖θ − θ_SGD‖.  θ is kept on
    the CPU (a paper-scale path has thousands of projections)."""

    step: int
    theta: Tensor
    excess: float
    val_excess: float
    gd_steps: int
    reached: bool
    start_excess: float
    seconds: float = 0.0
    moved: float = math.nan


def projection_key(problem: Problem, cfg: PathConfig, theta: Tensor, max_steps: int) -> str:
    """Fingerprint of a projection: the network, the data, the hyperparameters, the threshold,
    the budget and the starting point."""
    fields = ("model", "batch_norm", "conv", "eps", "lr", "momentum", "threshold", "dtype")
    return checkpoints.fingerprint(
        CHECKPOINT_VERSION, "projection", {f: getattr(cfg, f) for f in fields}, max_steps,
        data_key(problem), checkpoints.tensor_hash(theta),
    )  # fmt: skip


def project(
    problem: Problem,
    cfg: PathConfig,
    theta: Tensor,
    *,
    step: int = 0,
    max_steps: int | None = None,
    path: str | Path | None = None,
) -> Projection:
    r"""Full-batch gradient descent with momentum from θ (velocity zero),
    :math:`v \leftarrow \mu v + \nabla L(\theta),\ \theta \leftarrow \theta - \eta v`, with the
    training run's η and μ, until L(θ) − H(q) < δ or ``max_steps`` (default
    ``cfg.max_steps``) steps.  Cached at ``path`` under :func:`projection_key`, with the
    descent's state saved every ``cfg.checkpoint_every`` steps, so that a killed projection
    resumes."""
    max_steps = cfg.max_steps if max_steps is None else max_steps
    key = projection_key(problem, cfg, theta, max_steps)
    saved = checkpoints.load_matching(path, key)
    if saved is not None and saved["done"]:
        return Projection(**{k: saved[k] for k in Projection.__dataclass_fields__ if k in saved})
    t0 = time.perf_counter()
    theta = theta.detach().to(problem.device)
    current, velocity, k, start_excess, spent = theta, torch.zeros_like(theta), 0, None, 0
    if saved is not None:
        current, velocity = saved["theta"].to(theta.device), saved["velocity"].to(theta.device)
        k, start_excess, spent = saved["k"], saved["start_excess"], saved["seconds"]
    with deterministic(problem.device), threads("small"):
        while True:
            value, grad = problem.loss_and_grad(current)
            excess = value - problem.entropy
            start_excess = excess if start_excess is None else start_excess
            if excess < cfg.threshold or k == max_steps:
                break
            velocity = cfg.momentum * velocity + grad
            current = current - cfg.lr * velocity
            k += 1
            if path is not None and cfg.checkpoint_every and k % cfg.checkpoint_every == 0:
                checkpoints.save_checkpoint(path, {
                    "fingerprint": key, "done": False, "theta": current.cpu(),
                    "velocity": velocity.cpu(), "k": k, "start_excess": start_excess,
                    "seconds": spent + time.perf_counter() - t0,
                })  # fmt: skip
        val_excess = problem.excess(current, val=True)
    seconds, moved = spent + time.perf_counter() - t0, (current - theta).norm().item()
    proj = Projection(step, current.cpu(), excess, val_excess, k, excess < cfg.threshold,
                      start_excess, seconds, moved)  # fmt: skip
    if path is not None:
        checkpoints.save_checkpoint(
            path, {**asdict(proj), "theta": current.cpu(), "fingerprint": key, "done": True}
        )
    return proj


# --------------------------------------------------------------------------------------------
# Line connectedness and refinement
# --------------------------------------------------------------------------------------------
@dataclass
class Segment:
    """The segment between the projections at iterations ``a`` < ``b``: training and
    validation losses above H(q) at :data:`N_POINTS` evenly spaced points, endpoints included
    (``(N_POINTS,)`` each), its length ‖θ_b − θ_a‖, whether every training loss is below the
    threshold, and its refinement depth (0: consecutive epochs)."""

    a: int
    b: int
    train: Tensor
    val: Tensor
    length: float
    connected: bool
    depth: int = 0


def segment(problem: Problem, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor, float]:
    """Training and validation losses above H(q) at the :data:`N_POINTS` points
    θ_a + t(θ_b − θ_a), t = 0, 1/9, …, 1, each set evaluated in one batched call over the
    stacked parameters ``(N_POINTS, P)``; and ‖θ_b − θ_a‖.  Float64 on the CPU."""
    t = torch.linspace(0, 1, N_POINTS, dtype=a.dtype, device=a.device).unsqueeze(1)
    stacked = a.unsqueeze(0) + t * (b - a).unsqueeze(0)
    with deterministic(problem.device), threads("small"):
        train_l = problem.losses(stacked) - problem.entropy
        val_l = problem.losses(stacked, val=True) - problem.entropy
    to64 = dict(dtype=torch.float64, device="cpu")
    return train_l.to(**to64), val_l.to(**to64), (b - a).norm().item()


def cached_segment(
    problem: Problem, pa: Projection, pb: Projection, path: str | Path | None
) -> tuple[Tensor, Tensor, float]:
    """:func:`segment` between two projections, cached at ``path`` under a fingerprint of the
    data and of both endpoints."""
    key = checkpoints.fingerprint(CHECKPOINT_VERSION, "segment", data_key(problem),
                                  checkpoints.tensor_hash(pa.theta),
                                  checkpoints.tensor_hash(pb.theta))  # fmt: skip
    saved = checkpoints.load_matching(path, key)
    if saved is not None:
        return saved["train"], saved["val"], saved["length"]
    train_l, val_l, length = segment(problem, pa.theta, pb.theta)
    if path is not None:
        checkpoints.save_checkpoint(path, {"fingerprint": key, "train": train_l, "val": val_l,
                                           "length": length})  # fmt: skip
    return train_l, val_l, length


def refine(
    endpoints: list[int],
    project_at: Callable[[int], Projection],
    evaluate: Callable[[Projection, Projection], tuple[Tensor, Tensor, float]],
    threshold: float,
    max_depth: int | None = None,
) -> tuple[dict[int, Projection], list[Segment], list[Segment]]:
    """The paper's recursive refinement.  For consecutive ``endpoints`` (iterations), project
    both and test the segment; when it is not line-connected, both projections reached the
    threshold, the two iterations are not adjacent and the depth is below ``max_depth``,
    project the state halfway between them (``a + ⌊(b − a)/2⌋``) and test both halves.

    A segment with an endpoint that missed the threshold is not refined: no point inserted
    between them can make that endpoint a minimum.  Returns the projections by iteration, the
    final segments in order, and every segment tested, refined ones included."""
    points: dict[int, Projection] = {}

    def point(k: int) -> Projection:
        if k not in points:
            points[k] = project_at(k)
        return points[k]

    leaves: list[Segment] = []
    tested: list[Segment] = []
    stack = [(a, b, 0) for a, b in zip(endpoints[-2::-1], endpoints[:0:-1], strict=True)]
    while stack:
        a, b, depth = stack.pop()
        pa, pb = point(a), point(b)
        train_l, val_l, length = evaluate(pa, pb)
        seg = Segment(a, b, train_l, val_l, length, bool((train_l < threshold).all()), depth)
        tested.append(seg)
        deeper = max_depth is None or depth < max_depth
        if seg.connected or b - a <= 1 or not (pa.reached and pb.reached) or not deeper:
            leaves.append(seg)
            continue
        c = a + (b - a) // 2
        stack += [(c, b, depth + 1), (a, c, depth + 1)]
    return points, leaves, tested
