"""What the matrix-free estimators share: the matvec type, seeded probes, and result records.

Probes are drawn on the CPU from an explicit seed or ``torch.Generator`` and then moved to the
device, so that a seed gives the same probes on every device and on every distributed rank.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from hessnoise._validate import number

Matvec = Callable[[Tensor], Tensor]
"""A symmetric linear map applied to probes: ``(k, P) → (k, P)``, one row per probe."""


@dataclass(frozen=True)
class TraceEstimate:
    """A stochastic trace estimate.

    ``value`` is the estimate, ``se`` its standard error (conditional on the sketch for
    Hutch++), ``n_matvecs`` the matrix-vector products used, ``seed`` the seed of the probes;
    ``converged`` is False when a target standard error was asked for and the budget ran out.
    """

    value: float
    se: float
    n_matvecs: int
    seed: int
    converged: bool = True


def generator_from(
    seed: int | None, generator: torch.Generator | None
) -> tuple[torch.Generator, int]:
    """A CPU generator and its seed from exactly one of ``seed`` or ``generator``."""
    if (seed is None) == (generator is None):
        raise ValueError(
            f"pass exactly one of seed= or generator= (got seed={seed!r}, "
            f"generator={generator!r}): estimates are reproducible only from an explicit seed"
        )
    if generator is not None:
        if generator.device.type != "cpu":
            raise ValueError(
                f"generator must be a CPU torch.Generator; got device={generator.device}"
            )
        return generator, generator.initial_seed()
    number("seed", seed, lo=0, integer=True)
    return torch.Generator().manual_seed(seed), seed


def rademacher(
    k: int, dim: int, generator: torch.Generator, *, dtype: torch.dtype, device: torch.device | str
) -> Tensor:
    """``(k, dim)`` independent ±1 entries."""
    bits = torch.randint(0, 2, (k, dim), generator=generator)
    return (2 * bits - 1).to(dtype=dtype, device=device)


def gaussian(
    k: int, dim: int, generator: torch.Generator, *, dtype: torch.dtype, device: torch.device | str
) -> Tensor:
    """``(k, dim)`` independent standard normal entries."""
    return torch.randn(k, dim, generator=generator, dtype=torch.float64).to(
        dtype=dtype, device=device
    )


def dense_matvec(a: Tensor) -> Matvec:
    """The matvec of a symmetric matrix ``a`` ``(P, P)``: ``V ↦ V @ a``."""
    return lambda v: v @ a


def check_budget(budget: int | None, target_se: float | None) -> None:
    """Exactly one stopping rule: a fixed budget of matvecs or a target standard error."""
    if (budget is None) == (target_se is None):
        raise ValueError(
            f"pass exactly one of budget= (a number of matrix-vector products) or target_se= "
            f"(a standard error to reach); got budget={budget!r}, target_se={target_se!r}"
        )
    if budget is not None:
        number("budget", budget, lo=2, integer=True)
    else:
        number("target_se", target_se, lo=0, lo_open=True)


def sample_until(
    draw: Callable[[int], Tensor], limit: int, target_se: float | None, block: int
) -> tuple[Tensor, float, bool]:
    """Draw quadratic-form samples ``block`` at a time (``draw(k)`` returns ``(k,)``) until
    ``limit`` are drawn or, with a ``target_se``, until the standard error reaches it (after
    at least two blocks).  Returns the samples, their standard error and whether the target
    (if any) was met."""
    limit = max(limit, 1)
    samples: list[Tensor] = []
    n = 0
    while n < limit:
        k = min(block, limit - n)
        samples.append(draw(k))
        n += k
        if target_se is not None and n >= 2 * block:
            if standard_error(torch.cat(samples)) <= target_se:
                break
    q = torch.cat(samples)
    se = standard_error(q)
    return q, se, target_se is None or se <= target_se


def standard_error(samples: Tensor) -> float:
    """Sample standard deviation over √n; infinite for fewer than two samples."""
    n = samples.numel()
    return samples.std().item() / math.sqrt(n) if n > 1 else math.inf
