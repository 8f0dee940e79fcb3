r"""What :class:`~hessnoise.curvature.operator.HessianOperator` runs the model on, and how:
the data as batches (a tensor pair or an iterable of pairs, such as a ``DataLoader``), the
model's train or eval mode (and the layers for which that choice matters), and the memory the
operator may hold.

The operator itself is in :mod:`hessnoise.curvature.operator`; its dense Hessian, built from
these batches, in :mod:`hessnoise.curvature.dense`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

Batch = tuple[Any, Tensor]
STOCHASTIC_LAYERS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
                     nn.FeatureAlphaDropout, nn.RReLU)  # fmt: skip
BATCH_COUPLED_LAYERS = (nn.modules.batchnorm._BatchNorm,)


# --------------------------------------------------------------------------------------------
# Modes and layers
# --------------------------------------------------------------------------------------------
@contextmanager
def model_mode(model: nn.Module, train: bool) -> Iterator[None]:
    """Put ``model`` in train or eval mode and restore every submodule's own mode afterwards."""
    saved = [(m, m.training) for m in model.modules()]
    model.train(train)
    try:
        yield
    finally:
        for module, was_training in saved:
            module.training = was_training


def mode_dependent_layers(model: nn.Module) -> list[str]:
    """Names of submodules whose train-mode output is random or couples the samples of a batch."""
    found = []
    for name, module in model.named_modules():
        random_layer = isinstance(module, STOCHASTIC_LAYERS) and getattr(module, "p", 1.0) != 0
        if random_layer or isinstance(module, BATCH_COUPLED_LAYERS):
            found.append(f"{name or '<model>'} ({type(module).__name__})")
    return found


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------
def _is_tensors(x: Any) -> bool:
    if isinstance(x, Tensor):
        return True
    return isinstance(x, (tuple, list)) and bool(x) and all(isinstance(t, Tensor) for t in x)


def _is_batch(b: Any) -> bool:
    """Whether ``b`` is one pair ``(inputs, targets)``: inputs a tensor or a tuple of them."""
    return (
        isinstance(b, (tuple, list))
        and len(b) == 2
        and isinstance(b[1], Tensor)
        and _is_tensors(b[0])
    )


def _as_batches(data: Any) -> list[Batch]:
    """A tensor pair ``(x, y)`` or an iterable of them (a DataLoader) as a list of batches."""
    if _is_batch(data):
        return [(data[0], data[1])]
    if isinstance(data, (Tensor, str, bytes)) or not isinstance(data, Iterable):
        raise ValueError(
            f"data must be a pair (inputs, targets) of tensors or an iterable of such pairs "
            f"(e.g. a DataLoader); got {type(data).__name__}"
        )
    batches = []
    for i, b in enumerate(data):
        if not _is_batch(b):
            raise ValueError(
                f"data[{i}] must be a pair (inputs, targets) of tensors; got {type(b).__name__}"
            )
        batches.append((b[0], b[1]))
    if not batches:
        raise ValueError("data holds no batches")
    return batches


def _n(batch: Batch) -> int:
    return int(batch[1].shape[0])


def _to(x: Any, device: torch.device, dtype: torch.dtype | None) -> Any:
    if isinstance(x, (tuple, list)):
        return type(x)(_to(t, device, dtype) for t in x)
    if dtype is not None and x.is_floating_point():
        return x.to(device=device, dtype=dtype)
    return x.to(device=device)


def _cat(xs: Sequence[Any]) -> Any:
    if isinstance(xs[0], (tuple, list)):
        return type(xs[0])(_cat([x[i] for x in xs]) for i in range(len(xs[0])))
    return torch.cat(list(xs))


def _nbytes(x: Any) -> int:
    if isinstance(x, (tuple, list)):
        return sum(_nbytes(t) for t in x)
    return x.numel() * x.element_size()


def default_memory_budget(device: torch.device) -> int:
    """Bytes the operator may hold: half the free CUDA memory, or a quarter of the RAM (≤ 8 GiB)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free // 2
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        ram = 8 << 30
    return min(ram // 4, 8 << 30)
