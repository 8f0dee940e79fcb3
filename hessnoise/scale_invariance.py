r"""Scale symmetries of networks with batch normalization, and the trace that ignores them.

Batch normalization divides each channel by its standard deviation over the batch, so the loss
does not change when the weights in front of it are multiplied by a positive number:
:math:`L(\ldots, c\,\boldsymbol\theta_g, \ldots) = L(\boldsymbol\theta)` for every :math:`c>0`,
for each *scale-invariant group* :math:`g`.  Differentiating twice,
:math:`c^2\,H_{gg}(c\boldsymbol\theta_g) = H_{gg}(\boldsymbol\theta_g)`: the curvature of a
group falls like :math:`1/\|\boldsymbol\theta_g\|^2` as its norm grows, whatever else happens.
Without weight decay, SGD makes the norm of every such group grow (its gradient is orthogonal
to it), so the plain Hessian trace falls along a path even where the function the network
computes does not get flatter.  The *scale-invariant trace*

.. math::  T_{\rm inv}(\boldsymbol\theta) = \sum_{g\ \text{invariant}} \|\boldsymbol\theta_g\|^2
    \operatorname{tr} H_{gg} + \sum_{\text{other coordinates } i} H_{ii}
    = \operatorname{tr}(D H), \qquad D = \operatorname{diag}(\|\boldsymbol\theta_{g(i)}\|^2
    \text{ or } 1),

is unchanged by every such rescaling; it is the trace of the Hessian with respect to the
normalized weights :math:`\boldsymbol\theta_g/\|\boldsymbol\theta_g\|` (times the fixed norms),
:math:`D^{1/2} H D^{1/2}`.

The groups are found in the module's graph (``torch.fx``) by asking, for a node, whether
multiplying its output by c > 0 leaves the loss unchanged: for one channel at a time, when
every use reaches a BatchNorm through per-channel positively homogeneous operations (ReLU, max
or average pooling: f(cz) = c·f(z)); for the whole output, when every use reaches a BatchNorm
through positively homogeneous operations and weight layers that keep the scaling (no bias) or
are normalized immediately (the normalization subtracts a bias).  Then

* a convolution or linear layer whose output channels are free is one group per output
  channel: the weight's row alone when a BatchNorm follows directly (a bias there has no
  curvature at all, the normalization subtracts it), the row and its bias together otherwise;
* a weight layer whose output is free as a whole, or an affine BatchNorm (scale and shift), is
  one group.

:class:`Partition` splits θ into the invariant groups and, for the rest, one group per
parameter tensor: what a trace estimate per group needs
(:func:`hessnoise.curvature.hutchpp_groups`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, fx, nn
from torch.nn import functional as F

WEIGHT_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
NORMS = (nn.modules.batchnorm._BatchNorm,)
# Positively homogeneous (f(cz) = c·f(z), c > 0) and acting on each channel alone.
CHANNELWISE_MODULES = (nn.ReLU, nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d,
                       nn.Identity)  # fmt: skip
CHANNELWISE_FUNCTIONS = (F.relu, torch.relu, F.max_pool2d, F.avg_pool2d, F.max_pool1d,
                         F.avg_pool1d)  # fmt: skip
# Positively homogeneous, mixing channels into features: allowed only for a uniform scaling.
RESHAPES_MODULES = (nn.Flatten,)
RESHAPE_FUNCTIONS = (torch.flatten,)


@dataclass(frozen=True)
class Partition:
    """θ ``(P,)`` split into groups.

    ``labels`` ``(P,)`` int64 gives each coordinate's group; ``names`` ``(G,)`` name the
    groups (``'0.weight[3]'`` for output channel 3 of the weight of module ``0``,
    ``'1.weight+bias'`` for a BatchNorm's scale and shift, ``'4.bias'`` for a whole tensor);
    ``layers`` ``(G,)`` the module each group belongs to; ``invariant`` ``(G,)`` bool marks the
    scale-invariant groups (first in the order); ``modules`` and ``kinds`` ``(L,)`` are the
    modules with parameters in parameter order and their class names."""

    labels: Tensor
    names: tuple[str, ...]
    layers: tuple[str, ...]
    invariant: Tensor
    modules: tuple[str, ...]
    kinds: tuple[str, ...]

    @property
    def n_groups(self) -> int:
        return len(self.names)

    def group_norms(self, theta: Tensor) -> Tensor:
        """‖θ_g‖ per group, ``(G,)`` float64."""
        sq = torch.zeros(self.n_groups, dtype=torch.float64)
        sq.index_add_(0, self.labels, theta.detach().double().cpu() ** 2)
        return sq.sqrt()

    def weights(self, theta: Tensor) -> Tensor:
        """The diagonal of D per group, ``(G,)`` float64: ‖θ_g‖² for invariant groups, 1 else."""
        w = self.group_norms(theta) ** 2
        return torch.where(self.invariant, w, torch.ones_like(w))

    def per_layer(self, values: Tensor) -> Tensor:
        """Sum ``values`` ``(G,)`` over the groups of each module: ``(L,)`` in
        :attr:`modules` order."""
        index = torch.tensor([self.modules.index(n) for n in self.layers])
        out = torch.zeros(len(self.modules), dtype=torch.float64)
        return out.index_add_(0, index, values.double())

    def layer_norms(self, theta: Tensor) -> Tensor:
        """‖θ_l‖ per module ``(L,)``."""
        return self.per_layer(self.group_norms(theta) ** 2).sqrt()

    def rescale(self, theta: Tensor, factors: Tensor) -> Tensor:
        """θ with every coordinate of group g multiplied by ``factors[g]`` ``(G,)``."""
        return theta * factors.to(theta)[self.labels.to(theta.device)]


def _users_all(node: fx.Node, test) -> bool:
    return bool(node.users) and all(test(u) for u in node.users)


class _Graph:
    """A module's ``torch.fx`` graph, with the questions the rules ask of its nodes."""

    def __init__(self, module: nn.Module) -> None:
        self.graph = fx.symbolic_trace(module).graph
        self.modules = dict(module.named_modules())

    def mod(self, node: fx.Node) -> nn.Module | None:
        return self.modules.get(node.target) if node.op == "call_module" else None

    def is_a(self, node: fx.Node, modules: tuple, functions: tuple) -> bool:
        m = self.mod(node)
        if m is not None:
            return isinstance(m, modules)
        return node.op == "call_function" and node.target in functions

    def norm_of(self, u: fx.Node, node: fx.Node) -> bool:
        return isinstance(self.mod(u), NORMS) and u.args[0] is node

    def normalized_directly(self, node: fx.Node) -> bool:
        return _users_all(node, lambda u: self.norm_of(u, node))

    def channels_free(self, node: fx.Node) -> bool:
        """Scaling one channel of ``node``'s output leaves the loss unchanged."""

        def ok(u: fx.Node) -> bool:
            channelwise = self.is_a(u, CHANNELWISE_MODULES, CHANNELWISE_FUNCTIONS)
            return self.norm_of(u, node) or (channelwise and self.channels_free(u))

        return _users_all(node, ok)

    def output_free(self, node: fx.Node) -> bool:
        """Scaling all of ``node``'s output at once leaves the loss unchanged."""

        def ok(u: fx.Node) -> bool:
            if self.norm_of(u, node):
                return True
            m = self.mod(u)
            if isinstance(m, WEIGHT_LAYERS):
                keeps = m.bias is None and self.output_free(u)
                return u.args[0] is node and (self.normalized_directly(u) or keeps)
            homogeneous = self.is_a(u, CHANNELWISE_MODULES + RESHAPES_MODULES,
                                    CHANNELWISE_FUNCTIONS + RESHAPE_FUNCTIONS)  # fmt: skip
            return homogeneous and self.output_free(u)

        return _users_all(node, ok)


@dataclass(frozen=True)
class InvariantGroups:
    """What :func:`invariant_groups` finds: ``rows`` — weight tensors each of whose rows
    (output channels) is a group, with ``with_bias`` — those whose bias joins its row;
    ``whole`` — lists of parameter names that form one group each."""

    rows: tuple[str, ...]
    with_bias: tuple[str, ...]
    whole: tuple[tuple[str, ...], ...]


def invariant_groups(module: nn.Module) -> InvariantGroups:
    """The scale-invariant groups of ``module`` by the rules of the module docstring."""
    g = _Graph(module)
    rows, with_bias, whole = [], [], []
    for node in g.graph.nodes:
        m = g.mod(node)
        if isinstance(m, WEIGHT_LAYERS) and g.channels_free(node):
            rows.append(f"{node.target}.weight")
            if m.bias is not None and not g.normalized_directly(node):
                with_bias.append(f"{node.target}.bias")
        elif isinstance(m, WEIGHT_LAYERS) and g.output_free(node):
            whole.append(tuple(f"{node.target}.{n}" for n, _ in m.named_parameters()))
        elif isinstance(m, NORMS) and m.affine and g.output_free(node):
            whole.append((f"{node.target}.weight", f"{node.target}.bias"))
    return InvariantGroups(tuple(rows), tuple(with_bias), tuple(whole))


def partition(module: nn.Module) -> Partition:
    """The :class:`Partition` of ``module``'s parameters (``module.parameters()`` order, as in
    :class:`hessnoise.params.FlatNet`): its scale-invariant groups, then every remaining
    parameter tensor whole."""
    found = invariant_groups(module)
    where: dict[str, Tensor] = {}
    off = 0
    for name, p in module.named_parameters():
        where[name] = torch.arange(off, off + p.numel()).reshape(
            (*p.shape[:1], -1) if p.ndim else (1,)
        )
        off += p.numel()
    labels = torch.full((off,), -1, dtype=torch.int64)
    names: list[str] = []
    layers: list[str] = []

    def add(name: str, index: Tensor, first: str) -> None:
        labels[index.reshape(-1)] = len(names)
        names.append(name)
        layers.append(first.rsplit(".", 1)[0] if "." in first else first)

    for wname in found.rows:
        bias = f"{wname[: -len('weight')]}bias"
        for k, row in enumerate(where[wname]):
            if bias in found.with_bias:
                row = torch.cat([row, where[bias][k]])
            add(f"{wname}[{k}]" + ("+bias" if bias in found.with_bias else ""), row, wname)
    for group in found.whole:
        add("+".join(group), torch.cat([where[n].reshape(-1) for n in group]), group[0])
    n_invariant = len(names)
    for name, index in where.items():
        rest = index.reshape(-1)
        rest = rest[labels[rest] < 0]
        if rest.numel():
            add(name, rest, name)
    invariant = torch.arange(len(names)) < n_invariant
    owners = [n.rsplit(".", 1)[0] if "." in n else n for n in where]
    modules = tuple(dict.fromkeys(owners))
    kinds = tuple(type(module.get_submodule(m)).__name__ for m in modules)
    return Partition(labels, tuple(names), tuple(layers), invariant, modules, kinds)
