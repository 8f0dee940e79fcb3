"""How many threads a computation uses, chosen per workload.

Small-tensor loops (toy-valley replicas, SGD on a thousand-parameter network) pay for every
extra OpenMP thread, and much more so when another process holds one of the cores: a
spin-waiting thread that lost its core stalls every parallel region.  They run on one
thread.  Dense linear algebra (Hessian builds, eigensolves) scales with the cores and uses
all of them.  :func:`threads` sets the count for a block (or, as a decorator, for a function)
and restores the caller's setting afterwards.  Setting the environment variable
``HESSNOISE_THREADS`` to a count overrides every choice (``make bench`` uses it to measure the
alternative).

>>> import torch
>>> before = torch.get_num_threads()
>>> with threads(1):
...     torch.get_num_threads()
1
>>> torch.get_num_threads() == before
True
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

WORKLOADS = ("small", "dense")


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@contextmanager
def threads(n: int | str) -> Iterator[int]:
    """Run the block with ``n`` intra-op threads: an integer, ``'small'`` (one thread, for
    loops over small tensors) or ``'dense'`` (every core, for dense linear algebra)."""
    if n == "small":
        count = 1
    elif n == "dense":
        count = cores()
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
