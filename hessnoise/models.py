"""The networks of the experiments.

* :func:`mlp`: fully connected networks, e.g. the paper's one-hidden-layer MLP of
  Section 4.1 (14×14 inputs, 30 hidden units, 10 classes: 6,220 parameters).
* :func:`small_cnn`: a small convolutional network with BatchNorm, used to test that the
  curvature code handles normalization layers.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

from hessnoise._validate import choice, positive_int

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU, "softplus": nn.Softplus}


def mlp(
    d_in: int,
    hidden: Sequence[int],
    d_out: int,
    *,
    activation: str = "tanh",
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> nn.Sequential:
    """A fully connected network ``d_in → hidden[0] → … → d_out`` with PyTorch's default init,
    drawn from ``seed``.  ``activation`` is one of ``'tanh' | 'relu' | 'gelu' | 'softplus'``."""
    positive_int("d_in", d_in)
    positive_int("d_out", d_out)
    for i, h in enumerate(hidden):
        positive_int(f"hidden[{i}]", h)
    choice("activation", activation, tuple(ACTIVATIONS))
    widths = [d_in, *hidden, d_out]
    layers: list[nn.Module] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for k, (a, b) in enumerate(itertools.pairwise(widths)):
            layers.append(nn.Linear(a, b))
            if k < len(widths) - 2:
                layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers).to(dtype=dtype, device=device)


def small_cnn(
    in_channels: int = 1,
    n_classes: int = 10,
    *,
    width: int = 4,
    side: int = 8,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> nn.Sequential:
    """conv(3×3) → BatchNorm → tanh → conv(3×3, stride 2) → tanh → linear, for ``side×side``
    inputs of ``in_channels`` channels."""
    positive_int("width", width)
    positive_int("side", side)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.Tanh(),
            nn.Conv2d(width, width, 3, stride=2, padding=1),
            nn.Tanh(),
            nn.Flatten(),
            nn.Linear(width * ((side + 1) // 2) ** 2, n_classes),
        )
    return net.to(dtype)


def n_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
