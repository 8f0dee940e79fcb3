"""Argument checks shared by the package.

Every public entry point validates its arguments before it computes anything, and every
error names the parameter, the value it received and the values it allows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, TypeVar

T = TypeVar("T")


def choice(name: str, value: T, allowed: Iterable[T]) -> T:
    """Return ``value`` if it is one of ``allowed``; otherwise raise ``ValueError``."""
    allowed = tuple(allowed)
    if value not in allowed:
        listed = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{name}={value!r} is not allowed; choose one of {listed}")
    return value


def number(
    name: str,
    value: Any,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
    integer: bool = False,
) -> Any:
    """Return ``value`` if it is a finite number in the interval; otherwise raise ``ValueError``.

    ``lo``/``hi`` are inclusive unless ``lo_open``/``hi_open`` is set.  With ``integer=True``
    the value must be an ``int`` (``bool`` is refused).
    """
    left = "(" if lo_open else "["
    right = ")" if hi_open else "]"
    span = f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"
    kind = "an integer" if integer else "a number"
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (integer and not isinstance(value, int))
    ):
        raise ValueError(f"{name}={value!r} must be {kind} in {span}")
    if not math.isfinite(value):
        raise ValueError(f"{name}={value!r} must be {kind} in {span}")
    too_low = lo is not None and (value <= lo if lo_open else value < lo)
    too_high = hi is not None and (value >= hi if hi_open else value > hi)
    if too_low or too_high:
        raise ValueError(f"{name}={value!r} is out of range; allowed: {kind} in {span}")
    return value


def positive_int(name: str, value: Any) -> int:
    """An integer ≥ 1."""
    return number(name, value, lo=1, integer=True)


def numbers(name: str, values: Iterable[Any], **bounds: Any) -> tuple:
    """Check each element of a non-empty sequence with :func:`number`."""
    values = tuple(values)
    if not values:
        raise ValueError(f"{name}=() must hold at least one value")
    for i, v in enumerate(values):
        number(f"{name}[{i}]", v, **bounds)
    return values
