"""An independent reference: the dense Hessian by ``torch.autograd.functional.hessian``.

It shares no code with :class:`~hessnoise.curvature.operator.HessianOperator` (no batching,
no vmap, no graph reuse): the loss is written as a function of one flat parameter vector and
differentiated twice by PyTorch.  Tests and the book check the operator against it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call


def autograd_hessian(
    model: nn.Module,
    loss_fn: Any,
    x: Tensor | Sequence[Tensor],
    y: Tensor | Sequence[Tensor],
    *,
    weights: Sequence[float] | None = None,
) -> Tensor:
    """``(P, P)`` Hessian of ``loss_fn(model(x), y)`` in the model's eval mode, or of
    ``Σ_b weights[b] · loss_fn(model(x[b]), y[b])`` when ``weights`` is given."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    buffers = dict(model.named_buffers())
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    was_training = [m.training for m in model.modules()]
    model.eval()

    def loss_of(theta: Tensor) -> Tensor:
        params, i = {}, 0
        for n, s in zip(names, shapes, strict=True):
            params[n] = theta[i : i + s.numel()].view(s)
            i += s.numel()
        if weights is None:
            return loss_fn(functional_call(model, {**params, **buffers}, (x,)), y)
        return sum(
            w * loss_fn(functional_call(model, {**params, **buffers}, (xb,)), yb)
            for w, xb, yb in zip(weights, x, y, strict=True)
        )

    try:
        return torch.autograd.functional.hessian(loss_of, flat)
    finally:
        for m, t in zip(model.modules(), was_training, strict=True):
            m.training = t


def rel_err(a: Tensor, b: Tensor) -> float:
    """max |a − b| / max |b|: the relative error of ``a`` against the reference ``b``."""
    return ((a - b).abs().max() / b.abs().max()).item()
