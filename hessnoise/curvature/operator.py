r"""Hessian-vector products of a loss averaged over a dataset.

:class:`HessianOperator` is the Hessian

.. math::  H = \frac1M \sum_{n=1}^M \nabla^2_\theta\, \ell\big(f(x_n;\theta), y_n\big)

of a model's loss at its current parameters, as a linear operator on flat parameter vectors.
Every curvature quantity in the book (trace, extreme and negative eigenvalues, spectral
densities, the exact spectrum) is computed through it.

What it guarantees:

* **Exact sample weighting.** Batches of unequal size are weighted by their sample counts,
  so the result is the Hessian of the dataset mean, whatever the batching.
* **Many probes at once.** ``op(V)`` with ``V`` of shape ``(k, P)`` returns ``(k, P)``.  Two
  autodiff paths: reverse-over-reverse (double backward, ``mode='rev-rev'``), which can keep
  the first backward graph and reuse it for every later product, and forward-over-reverse
  (``mode='fwd-rev'``, ``torch.func.jvp`` of ``grad``, vmapped over the probes and chunked to
  a memory budget).  ``mode='auto'`` takes reverse-over-reverse for a single vector (fastest
  from scratch and, with the graph kept, for sequences such as Lanczos) and
  forward-over-reverse for blocks of probes.
* **No side effects.** The parameters are copied when the operator is made (it is the
  Hessian *at that point*), or taken from ``at``, a flat θ: the Hessian at θ needs no write
  into the model.  The caller's parameters, ``.grad`` and buffers are never written.
* **Deterministic.** The model runs in eval mode inside a context that restores every
  submodule's previous mode.  Asking for train mode (``train_mode=True``) on a model with
  dropout or batch normalization raises unless ``allow_stochastic=True`` is passed.
* **Distributed.** When ``torch.distributed`` is initialized, each rank passes its own shard
  of the data; sample counts and products are all-reduced, so every rank gets the Hessian of
  the global mean.

The data path (batches, model modes, the memory budget) is in
:mod:`hessnoise.curvature.batches`; the dense Hessian, column block by column block, in
:mod:`hessnoise.curvature.dense`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp, vmap

import hessnoise._forward_ad  # noqa: F401  (loads forward-mode AD without torch's warning)
from hessnoise._validate import choice, number
from hessnoise.curvature.batches import (
    Batch,
    _as_batches,
    _cat,
    _is_tensors,
    _n,
    _nbytes,
    _to,
    default_memory_budget,
    mode_dependent_layers,
    model_mode,
)
from hessnoise.curvature.dense import dense_hessian

MODES = ("auto", "rev-rev", "fwd-rev")


# --------------------------------------------------------------------------------------------
# The operator
# --------------------------------------------------------------------------------------------
class HessianOperator:
    r"""The Hessian of the dataset-mean loss at the model's current parameters.

    Parameters
    ----------
    model : any ``nn.Module``; called as ``model(x)`` (or ``model(*x)`` for a tuple ``x``).
    loss_fn : ``loss_fn(output, target)`` returning the *mean* over the batch (PyTorch's
        default reduction), or the sum with ``reduction='sum'``.
    data : a pair ``(x, y)`` of tensors, or an iterable of pairs such as a ``DataLoader``.
    params : names of the parameters to differentiate (default: all with ``requires_grad``);
        the others are held fixed.
    at : where to take the Hessian: a flat θ ``(P,)`` over ``params`` in the model's parameter
        order (``parameters_to_vector``'s), or a dict name → tensor; default: the model's
        current parameters.
    dtype : compute in this floating dtype (e.g. ``torch.float64``); default: the model's.
    mode : ``'auto' | 'rev-rev' | 'fwd-rev'`` (see the module docstring).
    reuse_graph : keep the first backward graph for later reverse-over-reverse products;
        ``'auto'`` keeps it when it fits the memory budget.
    merge_batches : concatenate consecutive batches (exact for per-sample losses, fewer and
        larger kernels); ``'auto'`` merges up to the memory budget, never with train-mode
        batch normalization.
    memory_budget : bytes for kept graphs, merged batches and probe chunks;
        default :func:`default_memory_budget`.
    chunk_size : probes per vmapped forward-over-reverse call; default from the budget.
    train_mode, allow_stochastic : see the module docstring.
    distributed : all-reduce over ``torch.distributed``; default: whether it is initialized.

    Example
    -------
    >>> import torch
    >>> net = torch.nn.Linear(3, 1, dtype=torch.float64)
    >>> x, y = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, 1, dtype=torch.float64)
    >>> op = HessianOperator(net, torch.nn.MSELoss(), (x, y))
    >>> op(torch.eye(op.dim, dtype=torch.float64)).shape
    torch.Size([4, 4])
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Any,
        data: Any,
        *,
        params: Sequence[str] | None = None,
        at: Tensor | Mapping[str, Tensor] | None = None,
        dtype: torch.dtype | None = None,
        mode: str = "auto",
        reuse_graph: bool | str = "auto",
        merge_batches: bool | str = "auto",
        memory_budget: int | None = None,
        chunk_size: int | None = None,
        train_mode: bool = False,
        allow_stochastic: bool = False,
        reduction: str = "mean",
        distributed: bool | None = None,
    ) -> None:
        choice("mode", mode, MODES)
        choice("reuse_graph", reuse_graph, (True, False, "auto"))
        choice("merge_batches", merge_batches, (True, False, "auto"))
        choice("reduction", reduction, ("mean", "sum"))
        if dtype is not None and not dtype.is_floating_point:
            raise ValueError(f"dtype={dtype} must be a floating dtype, e.g. torch.float64")
        if memory_budget is not None:
            number("memory_budget", memory_budget, lo=1, integer=True)
        if chunk_size is not None:
            number("chunk_size", chunk_size, lo=1, integer=True)
        named = dict(model.named_parameters())
        if params is None:
            params = [n for n, p in named.items() if p.requires_grad]
        unknown = [n for n in params if n not in named]
        if unknown or not params:
            raise ValueError(f"params={list(params)!r}: unknown or empty; allowed: {list(named)}")
        coupled = mode_dependent_layers(model)
        if train_mode and coupled and not allow_stochastic:
            raise ValueError(
                f"train_mode=True on a model with {', '.join(coupled)}: its output is random or "
                "couples the samples of a batch, so the Hessian would be too. Use "
                "train_mode=False (eval mode, the default) or pass allow_stochastic=True."
            )
        self.model = model
        self.loss_fn = loss_fn
        self.mode = mode
        self.train_mode = train_mode
        self.reduction = reduction
        self.names = list(params)
        first = named[self.names[0]]
        self.device = first.device
        self.dtype = dtype or first.dtype
        # Snapshot: the operator is the Hessian at these values, whatever the caller does next.
        self.params = {n: named[n].detach().to(self.dtype).clone() for n in self.names}
        if at is not None:
            self.params = self._at(at)
        self.frozen = {
            n: p.detach().to(self.dtype) for n, p in named.items() if n not in self.params
        }
        self.buffers = {
            n: (b.detach().clone().to(self.dtype) if b.is_floating_point() else b.detach().clone())
            for n, b in model.named_buffers()
        }
        self.itemsize = torch.finfo(self.dtype).bits // 8
        self.shapes = [p.shape for p in self.params.values()]
        self.sizes = [p.numel() for p in self.params.values()]
        self.dim = sum(self.sizes)
        self.distributed = (
            torch.distributed.is_available() and torch.distributed.is_initialized()
            if distributed is None
            else distributed
        )
        self.memory_budget = memory_budget or default_memory_budget(self.device)
        batches = [
            (_to(x, self.device, self.dtype), _to(y, self.device, None))
            for x, y in _as_batches(data)
        ]
        counts = torch.tensor([float(sum(_n(b) for b in batches))], dtype=torch.float64)
        self.local_samples = int(counts.item())
        self.n_samples = int(self._all_reduce(counts).item())
        self.bytes_per_sample = self._activation_bytes_per_sample(batches[0])
        may_merge = not (train_mode and any("BatchNorm" in c for c in coupled))
        if merge_batches is True or (merge_batches == "auto" and may_merge):
            batches = self._merge(batches)
        self.batches = batches
        self.weights = [
            (_n(b) if reduction == "mean" else 1.0) / self.n_samples for b in self.batches
        ]
        graph_bytes = 4 * self.bytes_per_sample * self.local_samples
        self.reuse_graph = reuse_graph is True or (
            reuse_graph == "auto" and graph_bytes <= self.memory_budget
        )
        self.chunk_size = chunk_size
        self._graphs: list[tuple[list[Tensor], list[Tensor]]] | None = None
        self.n_matvecs = 0
        self.fwd_rev_failure = ""  # why forward-over-reverse was abandoned, if it was
        self.linear_blocks: list[str] = []  # weights whose dense block came in Kronecker form

    def _at(self, at: Tensor | Mapping[str, Tensor]) -> dict[str, Tensor]:
        if isinstance(at, Tensor):
            size = sum(p.numel() for p in self.params.values())
            if at.shape != (size,):
                raise ValueError(f"at must have shape (P,) = ({size},); got {tuple(at.shape)}")
            parts = (
                at.detach()
                .to(self.device, self.dtype)
                .clone()
                .split([p.numel() for p in self.params.values()])
            )
            return {
                n: c.reshape(p.shape) for (n, p), c in zip(self.params.items(), parts, strict=True)
            }
        missing = [n for n in self.params if n not in at]
        if missing:
            raise ValueError(f"at is missing the parameters {missing}")
        return {n: at[n].detach().to(self.device, self.dtype).clone() for n in self.params}

    # -- shapes ------------------------------------------------------------------------------
    def flatten(self, tensors: Sequence[Tensor]) -> Tensor:
        """Per-parameter tensors ``(k, *shape)`` (or ``(*shape)``) to ``(k, P)`` (or ``(P,)``)."""
        lead = tensors[0].shape[: tensors[0].ndim - len(self.shapes[0])]
        return torch.cat([t.reshape(*lead, -1) for t in tensors], -1)

    def unflatten(self, v: Tensor) -> dict[str, Tensor]:
        """``(k, P)`` or ``(P,)`` to a dict of per-parameter tensors."""
        lead = v.shape[:-1]
        return {
            n: c.reshape(*lead, *s)
            for n, c, s in zip(self.names, v.split(self.sizes, -1), self.shapes, strict=True)
        }

    # -- the loss ----------------------------------------------------------------------------
    def _loss(self, params: dict[str, Tensor], batch: Batch, buffers: dict[str, Tensor]) -> Tensor:
        x, y = batch
        args = tuple(x) if isinstance(x, (tuple, list)) else (x,)
        out = functional_call(self.model, {**self.frozen, **buffers, **params}, args)
        return self.loss_fn(out, y)

    def _buffers(self) -> dict[str, Tensor]:
        # Train-mode batch norm writes its running statistics: give it a scratch copy.
        return {n: b.clone() for n, b in self.buffers.items()} if self.train_mode else self.buffers

    def _activation_bytes_per_sample(self, batch: Batch) -> int:
        sizes: list[int] = []

        def record(_module: nn.Module, _inputs: Any, out: Any) -> None:
            sizes.append(_nbytes(out) if _is_tensors(out) else 0)

        hooks = [m.register_forward_hook(record) for m in self.model.modules()]
        n = min(_n(batch), 8)
        x = batch[0]
        probe = (x[:n] if isinstance(x, Tensor) else type(x)(t[:n] for t in x), batch[1][:n])
        try:
            with torch.no_grad(), model_mode(self.model, self.train_mode):
                self._loss(self.params, probe, self._buffers())
        finally:
            for h in hooks:
                h.remove()
        return max(1, (sum(sizes) + _nbytes(probe[0])) // n)

    def _merge(self, batches: list[Batch]) -> list[Batch]:
        cap = max(1, self.memory_budget // (8 * self.bytes_per_sample))
        merged, group, count = [], [], 0
        for b in batches:
            if group and count + _n(b) > cap:
                merged.append((_cat([g[0] for g in group]), torch.cat([g[1] for g in group])))
                group, count = [], 0
            group.append(b)
            count += _n(b)
        merged.append((_cat([g[0] for g in group]), torch.cat([g[1] for g in group])))
        return merged

    def _all_reduce(self, t: Tensor) -> Tensor:
        if self.distributed:
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM)
        return t

    # -- value and gradient ------------------------------------------------------------------
    def loss_and_gradient(self) -> tuple[float, Tensor]:
        """The dataset-mean loss and its gradient ``(P,)`` at the operator's parameters."""
        total = torch.zeros(self.dim + 1, dtype=self.dtype, device=self.device)
        with model_mode(self.model, self.train_mode):
            for batch, w in zip(self.batches, self.weights, strict=True):
                ps = [p.clone().requires_grad_(True) for p in self.params.values()]
                loss = self._loss(dict(zip(self.names, ps, strict=True)), batch, self._buffers())
                gs = torch.autograd.grad(loss, ps)
                total[:-1] += w * self.flatten(gs)
                total[-1] += w * loss.detach()
        total = self._all_reduce(total)
        return total[-1].item(), total[:-1]

    # -- products ----------------------------------------------------------------------------
    def __call__(self, v: Tensor) -> Tensor:
        """H v for ``v`` of shape ``(P,)``, or H V for ``(k, P)`` (one row per probe)."""
        if v.shape[-1] != self.dim or v.ndim not in (1, 2):
            raise ValueError(
                f"v must have shape (P,) or (k, P) with P = {self.dim}; got {tuple(v.shape)}"
            )
        single = v.ndim == 1
        vs = v.reshape(-1, self.dim).to(device=self.device, dtype=self.dtype)
        k = vs.shape[0]
        mode = self.mode
        if mode == "auto":
            mode = "rev-rev" if k == 1 or self.fwd_rev_failure else "fwd-rev"
        with model_mode(self.model, self.train_mode):
            if mode == "rev-rev":
                out = self._rev_rev(vs)
            else:
                try:
                    out = self._fwd_rev(vs)
                except RuntimeError as err:
                    out = self._fall_back(err, vs)
        out = self._all_reduce(out)
        self.n_matvecs += k
        return out[0] if single else out

    matmat = __call__

    def _fall_back(self, err: RuntimeError, vs: Tensor) -> Tensor:
        """Some losses' backward formulas have no forward-mode derivative in torch (e.g.
        ``nn.MSELoss`` raises "ZeroTensors are immutable"); then double backward is used."""
        if self.mode == "fwd-rev":
            raise ValueError(
                f"mode='fwd-rev' fails for this model and loss ({err}); "
                "use mode='rev-rev' or 'auto'"
            ) from err
        self.fwd_rev_failure = str(err)
        return self._rev_rev(vs)

    def dense(self, *, chunk: int | None = None) -> Tensor:
        """The full ``(P, P)`` matrix, one parameter tensor's columns at a time, ``chunk``
        tangents per vmapped call (see :func:`hessnoise.curvature.dense.dense_hessian`)."""
        return dense_hessian(self, chunk=chunk)

    def _graph(self, batch: Batch) -> tuple[list[Tensor], list[Tensor]]:
        ps = [p.clone().requires_grad_(True) for p in self.params.values()]
        loss = self._loss(dict(zip(self.names, ps, strict=True)), batch, self._buffers())
        return ps, list(torch.autograd.grad(loss, ps, create_graph=True))

    def _rev_rev(self, vs: Tensor) -> Tensor:
        out = torch.zeros_like(vs)
        batched = vs.shape[0] > 1
        parts = self.unflatten(vs if batched else vs[0])
        cotangents = [parts[n] for n in self.names]
        if self.reuse_graph and self._graphs is None:
            self._graphs = [self._graph(b) for b in self.batches]
        for i, (batch, w) in enumerate(zip(self.batches, self.weights, strict=True)):
            ps, gs = self._graphs[i] if self._graphs is not None else self._graph(batch)
            hv = torch.autograd.grad(
                gs, ps, cotangents, retain_graph=self._graphs is not None, is_grads_batched=batched
            )
            out += w * self.flatten(hv).reshape(out.shape)
        return out

    def _probe_chunk(self, batch: Batch, k: int) -> int:
        if self.chunk_size is not None:
            return self.chunk_size
        per_probe = 6 * self.bytes_per_sample * _n(batch) + 4 * self.dim * self.itemsize
        return int(max(1, min(k, self.memory_budget // per_probe, 256)))

    def _fwd_rev(self, vs: Tensor) -> Tensor:
        out = torch.zeros_like(vs)
        buffers = self._buffers()
        for batch, w in zip(self.batches, self.weights, strict=True):

            def grad_of(params: dict[str, Tensor], batch: Batch = batch) -> dict[str, Tensor]:
                return grad(self._loss)(params, batch, buffers)

            def hvp(v: dict[str, Tensor], grad_of=grad_of) -> dict[str, Tensor]:
                return jvp(grad_of, (self.params,), (v,))[1]

            chunk = self._probe_chunk(batch, vs.shape[0])
            with torch.no_grad():
                for start in range(0, vs.shape[0], chunk):
                    block = self.unflatten(vs[start : start + chunk])
                    res = vmap(hvp, randomness="same")(block)
                    out[start : start + chunk] += w * self.flatten([res[n] for n in self.names])
        return out


def gradient(model: nn.Module, loss_fn: Any, data: Any, **kwargs: Any) -> tuple[float, Tensor]:
    """Dataset-mean loss and gradient ``(P,)``, through the same data path as
    :class:`HessianOperator` (same batching, weighting and modes)."""
    return HessianOperator(model, loss_fn, data, reuse_graph=False, **kwargs).loss_and_gradient()
