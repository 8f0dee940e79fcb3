"""Run scales and devices.

Every chapter runs at one of three scales:

``smoke``
    a few seconds per chapter; used by the tests.
``small``
    the default; real data that ships with the machine, the whole book in about
    20 minutes on a 2-core CPU.
``paper``
    the paper's own settings, meant for a GPU.

Each experiment module holds a config dataclass with a ``for_scale`` constructor that uses
:func:`by_scale` to pick its numbers, so that the three scales are defined in one place per
experiment and tested.
"""

from __future__ import annotations

from typing import TypeVar

import torch

from hessnoise._validate import choice

SCALES: tuple[str, ...] = ("smoke", "small", "paper")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
DEFAULT_SCALE = "small"
DEFAULT_DEVICE = "auto"

T = TypeVar("T")


def check_scale(scale: str) -> str:
    """Return ``scale`` if it is one of :data:`SCALES`; otherwise raise ``ValueError``."""
    return choice("scale", scale, SCALES)


def check_device(device: str) -> str:
    """Return ``device`` if it is one of :data:`DEVICES`; otherwise raise ``ValueError``."""
    return choice("device", device, DEVICES)


def resolve_device(device: str) -> torch.device:
    """Turn ``'auto' | 'cpu' | 'cuda'`` into a :class:`torch.device`.

    ``'auto'`` picks CUDA when it is available.  Asking for ``'cuda'`` on a machine
    without it raises ``ValueError`` rather than silently falling back to the CPU.
    """
    check_device(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "device='cuda' was requested but torch.cuda.is_available() is False; "
            "choose one of 'auto', 'cpu'"
        )
    return torch.device(device)


def by_scale(scale: str, *, smoke: T, small: T, paper: T) -> T:
    """Pick the value for ``scale`` (validated) out of the three given."""
    return {"smoke": smoke, "small": small, "paper": paper}[check_scale(scale)]
