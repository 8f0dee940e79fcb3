r"""The dense Hessian of a :class:`~hessnoise.curvature.operator.HessianOperator`, one
parameter tensor's columns at a time.

Forward-over-reverse with one-hot tangents: the columns of parameter tensor b are
differentiated only into the rows of b and of the tensors after it (smallest first), the
other triangle of blocks follows by symmetry, and the largest tensor, when it is a linear
layer's weight, gets its own block in one matrix product in Kronecker form
(:mod:`hessnoise.curvature.linear_block`).  Where forward mode is unavailable, identity
chunks go through the operator's double backward.

The functions take the operator, whose batches, weights and loss they use; call them through
:meth:`HessianOperator.dense` or :func:`hessnoise.curvature.exact.hessian_matrix`.  The
operator is in :mod:`hessnoise.curvature.operator`, its batches and model modes in
:mod:`hessnoise.curvature.batches`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.func import grad, jvp, vmap

import hessnoise._forward_ad  # noqa: F401  (loads forward-mode AD without torch's warning)
from hessnoise.curvature import linear_block
from hessnoise.curvature.batches import Batch, _n, model_mode
from hessnoise.progress import ticker

if TYPE_CHECKING:
    from hessnoise.curvature.operator import HessianOperator

# Dense Hessians at least this large (the paper's 6,220-parameter network) show a progress bar
# in Jupyter (hessnoise.progress); smaller ones take seconds.
DENSE_PROGRESS_DIM = 4000
# Tangents per vmapped call of the dense build on the CPU: larger calls are no faster there.
CPU_DENSE_CHUNK = 256


def dense_hessian(op: HessianOperator, *, chunk: int | None = None) -> Tensor:
    """The full ``(P, P)`` matrix of ``op``, one parameter tensor's columns at a time.

    Forward-over-reverse with one-hot tangents in a single parameter tensor: each block
    differentiates only that tensor, which skips the tangent work of all the others.
    The largest tensor needs only its own block; when it is a linear layer's weight, that
    block comes from :mod:`hessnoise.curvature.linear_block` in one matrix product.
    ``chunk`` tangents go through each vmapped call (default: as many as the memory
    budget allows, at most :data:`CPU_DENSE_CHUNK` on the CPU, where larger calls gain
    nothing; on a GPU, fewer and larger calls mean fewer kernel launches).
    Where forward mode is unavailable, identity chunks go through double backward.
    """
    if op.fwd_rev_failure or op.mode == "rev-rev":
        step = chunk or CPU_DENSE_CHUNK
        eye = torch.eye(op.dim, dtype=op.dtype, device=op.device)
        return torch.cat([op(eye[i : i + step]) for i in range(0, op.dim, step)])
    try:
        return _dense_fwd_rev(op, chunk)
    except RuntimeError as err:
        if op.mode == "fwd-rev":
            raise
        op.fwd_rev_failure = str(err)
        return dense_hessian(op, chunk=chunk)


def _dense_chunk(op: HessianOperator, n: int) -> int:
    per_tangent = 6 * op.bytes_per_sample * n + 4 * op.dim * op.itemsize
    cap = CPU_DENSE_CHUNK if op.device.type == "cpu" else op.dim
    return int(max(1, min(cap, op.memory_budget // per_tangent)))


def _linear_block(
    op: HessianOperator, out: Tensor, name: str, span: slice, batch: Batch, w: float, hvp: Any
) -> bool:
    """Add ``w`` × the Hessian block of ``name`` into ``out[span, span]`` by the Kronecker
    form, when ``name`` is the weight of an ``nn.Linear`` called once on ``(n, d_in)``
    inputs; checked against one ordinary product.  False (nothing added) otherwise."""
    path, _, leaf = name.rpartition(".")
    module = op.model.get_submodule(path)
    if leaf != "weight" or not isinstance(module, nn.Linear):
        return False
    inputs: list[Tensor] = []
    offset: list[Tensor | None] = [None]

    def hook(_m: nn.Module, args: tuple[Tensor, ...], result: Tensor) -> Tensor:
        inputs.append(args[0])
        return result if offset[0] is None else result + offset[0]

    buffers = op._buffers()

    def phi(delta: Tensor) -> Tensor:  # the loss with δ added to the layer's outputs
        offset[0] = delta
        try:
            return op._loss(op.params, batch, buffers)
        finally:
            offset[0] = None

    handle = module.register_forward_hook(hook)
    try:
        op._loss(op.params, batch, buffers)
        a = inputs[0]
        if len(inputs) != 1 or a.ndim != 2 or a.shape[0] != _n(batch):
            return False  # shared weights, or inputs with extra dimensions
        z = linear_block.output_hessians(phi, a.new_zeros(a.shape[0], module.out_features))
    finally:
        handle.remove()
    blocks = linear_block.kronecker_block(w * z, a, memory_budget=op.memory_budget)
    # The Kronecker form assumes samples that do not interact; one product checks it.
    gen = torch.Generator(device=op.device).manual_seed(0)
    v = torch.randn(out[span, span].shape[0], generator=gen, dtype=op.dtype,
                    device=op.device)  # fmt: skip
    expected = w * hvp(v.reshape(op.params[name].shape))[name].reshape(-1)
    error = (linear_block.block_matvec(blocks, v) - expected).norm() / expected.norm().clamp_min(
        torch.finfo(op.dtype).tiny
    )
    if not error.item() <= torch.finfo(op.dtype).eps ** 0.5:
        return False
    linear_block.add_block(out[span, span], blocks)
    return True


def _dense_fwd_rev(op: HessianOperator, chunk: int | None) -> Tensor:
    # Symmetry halves the work: parameter tensors are taken smallest first, and the columns
    # of tensor b are differentiated only into the rows of b and the tensors after it.  The
    # largest tensor (usually a first-layer weight) then needs only its own rows.
    out = torch.zeros(op.dim, op.dim, dtype=op.dtype, device=op.device)
    buffers = op._buffers()
    offsets = [0, *torch.tensor(op.sizes).cumsum(0).tolist()]
    span = {n: slice(offsets[k], offsets[k + 1]) for k, n in enumerate(op.names)}
    order = sorted(range(len(op.names)), key=lambda k: op.sizes[k])
    kronecker: dict[str, bool] = {}  # whether each batch's block came in Kronecker form
    blocks = len(op.batches) * len(op.sizes)  # one tick per parameter tensor and batch
    with (
        model_mode(op.model, op.train_mode),
        torch.no_grad(),
        ticker(blocks if op.dim >= DENSE_PROGRESS_DIM else 0, desc="dense Hessian") as tick,
    ):
        for pos, b in enumerate(order):
            name, shape, size = op.names[b], op.shapes[b], op.sizes[b]
            rows = [op.names[k] for k in order[pos:]]
            for batch, w in zip(op.batches, op.weights, strict=True):

                def grad_rows(p: Tensor, name=name, rows=rows, batch=batch) -> dict[str, Tensor]:
                    full = {**op.params, name: p}
                    sub = {r: full[r] for r in rows}
                    return grad(lambda q: op._loss({**full, **q}, batch, buffers))(sub)

                def hvp(v: Tensor, grad_rows=grad_rows, name: str = name) -> dict[str, Tensor]:
                    return jvp(grad_rows, (op.params[name],), (v,))[1]

                if rows == [name] and _linear_block(op, out, name, span[name], batch, w, hvp):
                    kronecker[name] = kronecker.get(name, True)
                    tick()
                    continue  # the block of a linear layer's weight, in one product
                kronecker[name] = False
                step = chunk or _dense_chunk(op, _n(batch))
                for i in range(0, size, step):
                    j = min(size, i + step)
                    onehot = torch.zeros(j - i, size, dtype=op.dtype, device=op.device)
                    onehot[torch.arange(j - i), torch.arange(i, j)] = 1
                    res = vmap(hvp)(onehot.reshape(j - i, *shape))
                    here = slice(offsets[b] + i, offsets[b] + j)
                    for r in rows:  # H is symmetric: store these columns as rows
                        out[here, span[r]].add_(res[r].reshape(j - i, -1), alpha=w)
                tick()
        op.linear_blocks = [n for n, every_batch in kronecker.items() if every_batch]
        for pos, b in enumerate(order):  # the other triangle of blocks, by transposition
            if op.names[b] not in op.linear_blocks:  # those are symmetric already
                diag = out[span[op.names[b]], span[op.names[b]]]
                diag.copy_((diag + diag.T) / 2)
            for a in order[pos + 1 :]:
                out[span[op.names[a]], span[op.names[b]]] = out[
                    span[op.names[b]], span[op.names[a]]
                ].T
    op.n_matvecs += op.dim
    return op._all_reduce(out)
