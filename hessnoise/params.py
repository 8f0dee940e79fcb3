r"""A network as a function of one flat parameter vector: f(θ, x).

The experiments are functional: optimizers take θ and return θ, curvature is evaluated *at*
a θ, and no state is passed between steps through a module's parameters.  :class:`FlatNet`
makes that possible for any ``nn.Module``: it calls the module through
``torch.func.functional_call`` with the parameters cut out of θ, so the module itself is only
read.  θ is ``(P,)`` in the order of ``module.parameters()``, the order of
``torch.nn.utils.parameters_to_vector``.

Example
-------
>>> import torch
>>> net = FlatNet(torch.nn.Linear(3, 2, dtype=torch.float64))
>>> theta = net.theta0()
>>> net(theta, torch.ones(4, 3, dtype=torch.float64)).shape
torch.Size([4, 2])
>>> net.dim
8
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.utils import parameters_to_vector, vector_to_parameters


class FlatNet:
    """``module`` as f(θ, x) with θ ``(P,)`` holding every parameter, flattened.

    Buffers (e.g. batch-norm running statistics) are passed as copies, so that a train-mode
    forward pass cannot update the module's own; the module's train/eval mode is used as is.
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        named = list(module.named_parameters())
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        self.dim = sum(self.sizes)
        self.buffers = {n: b.detach() for n, b in module.named_buffers()}

    def params(self, theta: Tensor) -> dict[str, Tensor]:
        """θ ``(..., P)`` as a dict of per-parameter tensors ``(..., *shape)`` (views of θ)."""
        lead = theta.shape[:-1]
        parts = theta.split(self.sizes, -1)
        return {
            n: c.reshape(*lead, *s) for n, c, s in zip(self.names, parts, self.shapes, strict=True)
        }

    def flatten(self, params: Mapping[str, Tensor]) -> Tensor:
        """The inverse of :meth:`params`: per-parameter tensors to θ ``(P,)``."""
        return torch.cat([params[n].reshape(-1) for n in self.names])

    def theta0(self) -> Tensor:
        """The module's current parameters as θ ``(P,)`` (a detached copy)."""
        return parameters_to_vector(self.module.parameters()).detach().clone()

    def write(self, theta: Tensor) -> nn.Module:
        """Copy θ into the module's parameters, for handing a plain module to other code."""
        with torch.no_grad():
            vector_to_parameters(theta.detach(), self.module.parameters())
        return self.module

    def __call__(self, theta: Tensor, x: Tensor) -> Tensor:
        """f(θ, x): the module's output at parameters θ ``(P,)`` for inputs ``x``."""
        buffers = {n: b.clone() for n, b in self.buffers.items()}
        return functional_call(self.module, {**buffers, **self.params(theta)}, (x,))
