"""The runs of a Fig. 2(a) sweep advanced together (:func:`run_batched`).

Each run of :mod:`hessnoise.experiments.floor_sgd` draws its own batches from its own generator;
here all of them take their steps together (:func:`hessnoise.train_batched.sgd_batched`:
stacked θ, one vmapped gradient per step), and snapshots that fall on the same step are
eigensolved in one batch.  The results are those of the runs one at a time, up to rounding;
on a GPU a second thread computes the snapshots while the steps go on.
"""

from __future__ import annotations

import copy
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from hessnoise import train_batched
from hessnoise.experiments.floor import Floor, Problem
from hessnoise.experiments.floor_sgd import (
    RunPlan,
    RunResult,
    draw_minibatch,
    fdr_sides,
    run_result,
    snapshots,
)
from hessnoise.losses import cross_entropy
from hessnoise.params import FlatNet
from hessnoise.threads import threads

if TYPE_CHECKING:
    from hessnoise.experiments.negative_eigenvalues import NegativeEigenvaluesConfig


def _records(
    problem: Problem,
    floor: Floor,
    plans: list[RunPlan],
    steps: list[int],
    thetas: Tensor,
    pool: tuple[ThreadPoolExecutor, Problem] | None = None,
) -> list[Any]:
    """:func:`_record` for several runs at once, their eigensolves batched; with ``pool`` (a
    thread and the problem it may use), the snapshots are handed to that thread and their
    records come back as futures."""
    out: list[Any] = [None] * len(plans)
    live = [i for i, (p, t) in enumerate(zip(plans, steps, strict=True)) if t > p.equil]
    if not live:
        return out
    with torch.no_grad():  # one transfer to the host for all the losses
        losses = torch.stack([problem.loss(thetas[i]) for i in live]).tolist()
    for i, loss in zip(live, losses, strict=True):
        out[i] = {"excess": loss - floor.loss}
    ends = [i for i in live if (steps[i] - plans[i].equil) % plans[i].block == 0]
    if not ends:
        return out
    at = thetas[ends]  # a copy: the steps go on while a pool works on it
    base = [out[i] for i in ends]
    where = problem if pool is None else pool[1]

    def complete() -> list[dict[str, Any]]:
        return [
            {**rec, **snap, **fdr_sides(where, floor, plans[i], theta)}
            for i, rec, snap, theta in zip(ends, base, snapshots(where, at), at, strict=True)
        ]

    if pool is None:
        for i, rec in zip(ends, complete(), strict=True):
            out[i] = rec
        return out
    futures = [Future() for _ in ends]

    def work() -> None:
        try:
            for future, rec in zip(futures, complete(), strict=True):
                future.set_result(rec)
        except BaseException as err:  # handed to the thread that waits for the records
            for future in futures:
                if not future.done():
                    future.set_exception(err)

    pool[0].submit(work)
    for i, future in zip(ends, futures, strict=True):
        out[i] = future
    return out


def run_batched(
    problem: Problem,
    floor: Floor,
    cfg: NegativeEigenvaluesConfig,
    plans: list[RunPlan],
    *,
    overlap: bool | None = None,
) -> list[RunResult]:
    """The runs of ``plans`` advanced together (:func:`hessnoise.train_batched.sgd_batched`): each
    draws its own batches from its own generator, as :func:`run_sgd` does, so it gives
    :func:`run_sgd`'s result up to rounding; snapshots that fall on the same step are
    eigensolved in one batch.  Each run keeps its own checkpoint, in :func:`run_sgd`'s
    format.

    With ``overlap`` (default: on a GPU) a second thread computes the snapshots while the
    steps go on: the device's eigensolves then run while the host launches the next steps,
    which is what the steps of a small network cost.  The results are the same.
    """
    if overlap is None:
        overlap = problem.device.type == "cuda"

    def sample_loss(theta: Tensor, xb: Tensor, tb: Tensor) -> Tensor:
        return cross_entropy(problem.net(theta, xb), tb, reduction="none")

    # The second thread gets its own copy of the network: torch.func.functional_call swaps a
    # module's parameters while it runs, so two threads must never call the same module.
    pool = None
    if overlap:
        own = replace(problem, net=FlatNet(copy.deepcopy(problem.net.module)))
        pool = (ThreadPoolExecutor(max_workers=1, thread_name_prefix="snapshots"), own)

    def callback(ids: list[int], steps: list[int], thetas: Tensor) -> list[Any]:
        return _records(problem, floor, [plans[i] for i in ids], steps, thetas, pool)

    runs = [
        train_batched.SGDRun(
            theta0=p.start,
            draw=draw_minibatch(problem, p.batch_size, p.protocol, onehot=True),
            lr=p.eta,
            steps=p.steps,
            seed=p.seed,
            every=p.every,
            checkpoint=p.checkpoint,
            fingerprint=p.fingerprint,
        )
        for p in plans
    ]
    try:
        with threads("small"):
            res = train_batched.sgd_batched(
                sample_loss, runs, callback=callback, checkpoint_every=cfg.checkpoint_every
            )
    finally:
        if pool is not None:
            pool[0].shutdown(wait=True, cancel_futures=True)
    return [run_result(problem, floor, cfg, p, r) for p, r in zip(plans, res, strict=True)]


def batched_by_default(device: torch.device | str) -> bool:
    """Whether :func:`sweep` and :func:`run_seed` advance their runs together unless told:
    on a GPU, where one run of a small network leaves the device idle."""
    return torch.device(device).type == "cuda"
