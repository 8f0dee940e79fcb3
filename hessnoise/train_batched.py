"""Many mini-batch SGD runs advanced together: stacked θ, one vmapped gradient per step.

* :class:`SGDRun` — one run: its own start, step size, batch size, length, seed and
  checkpoint;
* :func:`sgd_batched` — the runs advanced together, which is what a GPU needs to be busy on
  small networks; each run follows :func:`hessnoise.train.sgd`'s trajectory up to rounding and
  checkpoints in its format, so either function resumes the other's runs.

The optimizers of one run (L-BFGS, gradient descent, Gauss–Newton, SGD) and the checkpoint
format are in :mod:`hessnoise.train`; this module adds only the batching.  Below, :func:`sgd`
and :class:`SGDResult` are :func:`hessnoise.train.sgd` and :class:`hessnoise.train.SGDResult`.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from hessnoise._validate import number, positive_int
from hessnoise.train import SGDResult, _resume, _save


def _gather(records: list[Any]) -> None:
    """Replace each ``(step, Future)`` in ``records`` by its record (in place, in order)."""
    for k, rec in enumerate(records):
        if isinstance(rec, tuple):
            step, future = rec
            records[k] = {"step": step, **future.result()}


@dataclass(frozen=True)
class SGDRun:
    """One run of :func:`sgd_batched`, with the meaning :func:`sgd` gives these arguments:
    start ``theta0`` ``(P,)``, ``draw(generator)`` → the next batch (each tensor with the
    samples along its first dimension), step size ``lr``, ``steps``, generator ``seed``,
    callback period ``every``, and ``checkpoint`` path with its ``fingerprint``."""

    theta0: Tensor
    draw: Callable[[torch.Generator], tuple[Tensor, ...]]
    lr: float
    steps: int
    seed: int
    every: int = 1
    checkpoint: str | Path | None = None
    fingerprint: str = ""


BatchCallback = Callable[
    [list[int], list[int], Tensor], list["dict[str, Any] | Future[dict[str, Any]] | None"]
]


def sgd_batched(
    sample_loss: Callable[..., Tensor],
    runs: list[SGDRun],
    *,
    momentum: float = 0.0,
    callback: BatchCallback | None = None,
    checkpoint_every: int = 1000,
) -> list[SGDResult]:
    r"""The runs of :func:`sgd` advanced together, one vmapped gradient per step for all.

    ``sample_loss(theta, *batch)`` returns the per-sample losses ``(S,)`` of one run's batch;
    a run's mini-batch loss is their mean, as in :func:`sgd`.  The runs may differ in their
    start, step size, batch size (batches are zero-padded to the largest and the padding
    weighted by zero), number of steps (a finished run drops out) and seed: each run draws its
    batches from its own ``torch.Generator``, as :func:`sgd` would, so it sees the same
    batches and follows :func:`sgd`'s trajectory up to rounding (the padded sums add in
    another order: about 1e-16 relative per step).

    ``callback(runs, steps, thetas)`` is called after each step at which some runs reach a
    multiple of their ``every``: their indices into ``runs``, their step numbers and their θ
    ``(k, P)``; it returns one record (or ``None``) per run, stored as :func:`sgd` stores them.
    A record may also be a ``concurrent.futures.Future`` of one, for work the callback hands
    to another thread (on a GPU, eigensolves overlap the next steps): a checkpoint is written
    once the records it holds are complete, and the results once all are, so the steps never
    wait for that thread (a kill then loses the checkpoints not yet written, not their runs).
    Each run checkpoints to its own path in :func:`sgd`'s format and with its fingerprint, so
    a killed sweep resumes run by run, and either function can resume the other's checkpoint.
    Returns one :class:`SGDResult` per run, in order.
    """
    number("momentum", momentum, lo=0, hi=1, hi_open=True)
    positive_int("checkpoint_every", checkpoint_every)
    if not runs:
        raise ValueError("runs is empty; pass at least one SGDRun")
    for i, run in enumerate(runs):
        number(f"runs[{i}].lr", run.lr, lo=0, lo_open=True)
        positive_int(f"runs[{i}].steps", run.steps)
        number(f"runs[{i}].seed", run.seed, lo=0, integer=True)
        positive_int(f"runs[{i}].every", run.every)
        if run.theta0.shape != runs[0].theta0.shape or run.theta0.device != runs[0].theta0.device:
            raise ValueError(
                f"runs[{i}].theta0 has shape {tuple(run.theta0.shape)} on {run.theta0.device}; "
                f"every run must start from a θ of shape {tuple(runs[0].theta0.shape)} on "
                f"{runs[0].theta0.device}"
            )
    device = runs[0].theta0.device
    gens = [torch.Generator(device=device).manual_seed(run.seed) for run in runs]
    state = [
        _resume(r.checkpoint, r.fingerprint, r.theta0, g) for r, g in zip(runs, gens, strict=True)
    ]
    thetas = [s[0] for s in state]
    velocities = [s[1] for s in state]
    records = [s[2] for s in state]
    step = [s[3] for s in state]
    resumed = list(step)
    results: list[SGDResult | None] = [
        SGDResult(thetas[i], records[i], run.steps, resumed[i]) if step[i] >= run.steps else None
        for i, run in enumerate(runs)
    ]
    # Batch shapes from a draw with a throwaway generator: the padding is fixed for the whole
    # call, so that a run's arithmetic does not depend on which others are still running.
    probe = [run.draw(torch.Generator(device=device).manual_seed(0)) for run in runs]
    sizes = [int(b[0].shape[0]) for b in probe]
    pad = max(sizes)
    layout = [(t.shape[1:], t.dtype) for t in probe[0]]
    for i, b in enumerate(probe):
        if [(t.shape[1:], t.dtype) for t in b] != layout:
            raise ValueError(
                f"runs[{i}].draw returns tensors of trailing shapes and dtypes "
                f"{[(tuple(t.shape[1:]), t.dtype) for t in b]}; every run's must be "
                f"{[(tuple(s), d) for s, d in layout]} (only the batch size may differ)"
            )

    def weighted(theta: Tensor, weights: Tensor, *batch: Tensor) -> Tensor:
        return (sample_loss(theta, *batch) * weights).sum()

    grad_all = torch.func.vmap(torch.func.grad(weighted))
    done = [r is not None for r in results]
    # Checkpoints (and final states) wait here until their records are complete: saving them
    # never waits for another thread, so the steps go on while it works.
    unsaved: list[tuple[int, dict[str, Any]]] = []

    def save_ready(wait: bool) -> None:
        keep = []
        for i, state in unsaved:
            pending = [rec[1] for rec in state["records"] if isinstance(rec, tuple)]
            if wait or all(f.done() for f in pending):
                _gather(state["records"])
                _save(runs[i].checkpoint, runs[i].fingerprint, **state)
            else:
                keep.append((i, state))
        unsaved[:] = keep

    active: list[int] = []
    theta = velocity = torch.empty(0)
    while True:
        now = [i for i in range(len(runs)) if not done[i]]
        if not now:
            break
        if now != active:  # the set of runs changed: keep the state of those that go on
            for row, i in enumerate(active):
                thetas[i], velocities[i] = theta[row], velocity[row]
            active = now
            theta = torch.stack([thetas[i] for i in active])
            velocity = torch.stack([velocities[i] for i in active])
            lr = torch.tensor([runs[i].lr for i in active], dtype=theta.dtype, device=device)
            lr = lr.unsqueeze(1)
            weights = torch.zeros(len(active), pad, dtype=theta.dtype, device=device)
            for row, i in enumerate(active):
                weights[row, : sizes[i]] = 1.0 / sizes[i]
            slots = torch.cat(
                [torch.arange(sizes[i], device=device) + row * pad for row, i in enumerate(active)]
            )
            buffers = [
                torch.zeros(len(active) * pad, *shape, dtype=dtype, device=device)
                for shape, dtype in layout
            ]
        drawn = [runs[i].draw(gens[i]) for i in active]
        batch = []
        for c, buf in enumerate(buffers):
            buf[slots] = torch.cat([d[c] for d in drawn])
            batch.append(buf.view(len(active), pad, *buf.shape[1:]))
        g = grad_all(theta, weights, *batch)
        velocity = momentum * velocity + g if momentum else g
        theta = theta - lr * velocity
        for i in active:
            step[i] += 1
        due = [row for row, i in enumerate(active) if step[i] % runs[i].every == 0]
        if callback is not None and due:
            ids = [active[row] for row in due]
            recs = callback(ids, [step[i] for i in ids], theta[due])
            for i, rec in zip(ids, recs, strict=True):
                if isinstance(rec, Future):
                    records[i].append((step[i], rec))  # gathered before it is saved
                elif rec is not None:
                    records[i].append({"step": step[i], **rec})
        for row, i in enumerate(active):
            run = runs[i]
            at_checkpoint = step[i] % checkpoint_every == 0 and step[i] < run.steps
            if at_checkpoint or step[i] == run.steps:
                thetas[i], velocities[i] = theta[row].clone(), velocity[row].clone()
                if run.checkpoint is not None:
                    unsaved.append((i, {
                        "step": step[i], "theta": thetas[i], "velocity": velocities[i],
                        "generator": gens[i].get_state(), "records": list(records[i]),
                    }))  # fmt: skip
            done[i] = step[i] == run.steps
        if unsaved:
            save_ready(wait=False)
    save_ready(wait=True)
    for i, run in enumerate(runs):
        if results[i] is None:
            _gather(records[i])
            results[i] = SGDResult(thetas[i], records[i], run.steps, resumed[i])
    return [r for r in results if r is not None]
