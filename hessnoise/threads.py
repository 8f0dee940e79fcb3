"""How many threads a computation uses, chosen per workload.

Small-tensor loops (toy-valley replicas, SGD on a thousand-parameter network) pay for every
extra OpenMP thread, and much more so when another process holds one of the cores: a
spin-waiting thread that lost its core stalls every parallel region.  They run on one
thread.  Dense linear algebra (Hessian builds, eigensolves) scales with the cores and uses
the cores that other processes leave free (:func:`free_cores`): on two cores, an eigensolve of
a 1,450² matrix took 0.09 s on both and 0.14 s on one when the machine was quiet, but 2.0 s on
both and 0.25 s on one beside busy processes.  :func:`threads` sets the count for a block
(or, as a decorator, for a function) and restores the caller's setting afterwards.  Setting
the environment variable ``HESSNOISE_THREADS`` to a count overrides every choice (``make
bench`` uses it to measure the alternative).

>>> import torch
>>> before = torch.get_num_threads()
>>> with threads(1):
...     torch.get_num_threads()
1
>>> torch.get_num_threads() == before
True
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch

WORKLOADS = ("small", "dense")
_FREE_CACHE: dict[str, float] = {}
FREE_CACHE_S = 5.0  # how long a measurement of the other processes' load is reused


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _cpu_times() -> tuple[float, float] | None:
    """(busy, total) jiffies over all cores since boot (Linux), or None."""
    try:
        with open("/proc/stat") as fh:
            fields = [float(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def free_cores(window: float = 0.05) -> int:
    """The cores that other processes leave free, at least one.

    Measured from ``/proc/stat`` over ``window`` seconds while this process sleeps, so that all
    the CPU time counted is other processes'; reused for :data:`FREE_CACHE_S` seconds.  Where
    it cannot be measured (not Linux), every core counts as free.
    """
    now = time.monotonic()
    if now - _FREE_CACHE.get("at", -math.inf) < FREE_CACHE_S:
        return int(_FREE_CACHE["free"])
    first = _cpu_times()
    if first is None:
        return cores()
    time.sleep(window)
    second = _cpu_times()
    busy = (second[0] - first[0]) / max(second[1] - first[1], 1e-9) * cores()
    free = max(1, cores() - math.ceil(busy - 0.25))  # a quarter core of noise is not a user
    _FREE_CACHE.update(at=now, free=free)
    return free


@contextmanager
def threads(n: int | str) -> Iterator[int]:
    """Run the block with ``n`` intra-op threads: an integer, ``'small'`` (one thread, for
    loops over small tensors) or ``'dense'`` (the free cores, for dense linear algebra)."""
    if n == "small":
        count = 1
    elif n == "dense":
        count = free_cores()
    elif isinstance(n, int) and not isinstance(n, bool) and n >= 1:
        count = n
    else:
        raise ValueError(f"n={n!r} is not allowed; choose an integer ≥ 1, 'small' or 'dense'")
    override = os.environ.get("HESSNOISE_THREADS")
    if override:
        count = int(override)
    before = torch.get_num_threads()
    if count != before:
        torch.set_num_threads(count)
    try:
        yield count
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
