"""The design of Fig. 2(a)'s sweeps, shared by every chapter that reruns it: an η sweep at
batch size S₀ and an S sweep at learning rate η₀, which share their centre run (η₀, S₀).

A config of such sweeps has ``etas``, ``batch_sizes``, ``eta0`` and ``batch_size0``
(:class:`SweepDesign`); :func:`pairs` lists the distinct (η, S) to run, :func:`split` turns
their results back into the two sweeps, and :func:`distinct` lists a pair of sweeps' runs with
the centre once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, TypeVar

T = TypeVar("T")


class SweepDesign(Protocol):
    etas: tuple[float, ...]
    batch_sizes: tuple[int, ...]
    eta0: float
    batch_size0: int


def pairs(design: SweepDesign) -> list[tuple[float, int]]:
    """The distinct (η, S) of both sweeps: the η sweep, then the S sweep without the centre."""
    out = [(eta, design.batch_size0) for eta in sorted(design.etas)]
    return out + [(design.eta0, s) for s in sorted(design.batch_sizes) if s != design.batch_size0]


def split(design: SweepDesign, done: Mapping[tuple[float, int], T]) -> tuple[list[T], list[T]]:
    """The η sweep and the S sweep, each in increasing order, from the results ``done`` of
    every (η, S) of :func:`pairs`; the centre's result is the same object in both."""
    eta_sweep = [done[eta, design.batch_size0] for eta in sorted(design.etas)]
    batch_sweep = [done[design.eta0, s] for s in sorted(design.batch_sizes)]
    return eta_sweep, batch_sweep


def distinct(eta_sweep: Sequence[T], batch_sweep: Sequence[T]) -> list[T]:
    """Every distinct run of the two sweeps (by identity), the centre once."""
    out: list[T] = []
    for r in [*eta_sweep, *batch_sweep]:
        if all(r is not o for o in out):
            out.append(r)
    return out
