r"""The exact Hessian block of a linear layer's weight, as a sum of Kronecker products.

A linear layer ``z_n = W a_n + b`` with ``W`` ``(d_out, d_in)`` sees, for sample n, an input
``a_n`` that does not depend on ``W``.  With ``L = Σ_n ℓ_n`` (any per-sample weights folded
into the ℓ_n) and ``Z_n = ∂²L/∂z_n∂z_n`` ``(d_out, d_out)``, the chain rule gives the exact
block

.. math::  \frac{\partial^2 L}{\partial W_{ai}\,\partial W_{bj}}
           = \sum_n (Z_n)_{ab}\, a_{ni}\, a_{nj} ,
           \qquad H_{WW} = \sum_n Z_n \otimes a_n a_n^\top ,

where the second-order term through ``z_n`` vanishes because ``z_n`` is linear in ``W``
(the per-sample form behind Kronecker-factored curvature, e.g. Botev, Ritter & Barber,
2017, and Dangel, Harmeling & Hennig, 2020).  ``Z_n`` costs ``d_out`` Hessian-vector products
of the loss with respect to the layer's outputs, and the block is then one matrix product of
``(d_out², M)`` by ``(M, d_in²)``, a quarter of that with both factors' symmetry: for the first
layer of the paper's MLP (196 → 30) about a seventh of the work of differentiating its 5,880
columns one at a time, in a single large product instead of thousands of small ones.

The per-sample form needs the samples to be independent: ``∂²L/∂z_n∂z_m = 0`` for n ≠ m
(eval-mode networks with per-sample losses).  :meth:`HessianOperator.dense` checks each block
against one ordinary Hessian-vector product and falls back to the column-by-column path when
they disagree.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.func import grad, jvp, vmap


def output_hessians(phi: Callable[[Tensor], Tensor], zero: Tensor) -> Tensor:
    """Per-sample Hessians ``(M, d_out, d_out)`` of ``phi(δ)`` at ``δ = zero`` ``(M, d_out)``.

    ``phi`` is the loss with ``δ`` added to the layer's outputs.  Its Hessian in ``δ`` is
    block diagonal over samples, so the product with ``e_a`` on every sample at once gives
    column a of every sample's block: ``d_out`` products in all.
    """
    m, d = zero.shape
    eye = torch.eye(d, dtype=zero.dtype, device=zero.device)
    tangents = eye.unsqueeze(1).expand(d, m, d)  # (a, n, b): e_a on every sample

    def column(t: Tensor) -> Tensor:
        return jvp(grad(phi), (zero,), (t,))[1]

    cols = vmap(column)(tangents)  # (a, n, b) = (Z_n)_{ba}
    return cols.permute(1, 2, 0)


def _symmetric_index(d: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """The upper triangle of a symmetric ``(d, d)`` matrix as (rows, columns) ``(2, T)``, and
    ``(d, d)`` the position of every entry (i, j) and (j, i) in that packed triangle."""
    tri = torch.triu_indices(d, d, device=device)
    where = torch.empty(d, d, dtype=torch.long, device=device)
    pos = torch.arange(tri.shape[1], device=device)
    where[tri[0], tri[1]] = pos
    where[tri[1], tri[0]] = pos
    return tri, where


def kronecker_block(z: Tensor, a: Tensor, *, memory_budget: int) -> Tensor:
    """Σ_n Z_n ⊗ a_n a_nᵀ as ``(d_out, d_out, d_in, d_in)``: entry [a, b, i, j] is the block's
    entry at row (a, i) and column (b, j) of ``W`` (row-major), so that entry and its
    transpose [b, a, j, i] are the same number.

    ``z`` is ``(M, d_out, d_out)``, ``a`` ``(M, d_in)``.  Both factors are symmetric, so only
    the upper triangles of ``Z_n`` and of ``a_n a_nᵀ`` enter the product (a quarter of the
    work).  Samples are taken in chunks so that the packed outer products fit in a quarter of
    ``memory_budget`` bytes.  :func:`add_block` and :func:`block_matvec` use the result.
    """
    m, d_out, _ = z.shape
    d_in = a.shape[1]
    out_tri, out_where = _symmetric_index(d_out, z.device)
    in_tri, in_where = _symmetric_index(d_in, a.device)
    zs = ((z + z.transpose(1, 2)) / 2)[:, out_tri[0], out_tri[1]]  # (M, U)
    per_sample = in_tri.shape[1] * a.element_size()
    step = int(max(1, min(m, memory_budget // (4 * per_sample))))
    packed = torch.zeros(zs.shape[1], in_tri.shape[1], dtype=a.dtype, device=a.device)
    for s in range(0, m, step):
        ac = a[s : s + step]
        packed.addmm_(zs[s : s + step].T, ac[:, in_tri[0]] * ac[:, in_tri[1]])  # (U, T)
    full = packed.index_select(1, in_where.reshape(-1)).index_select(0, out_where.reshape(-1))
    return full.view(d_out, d_out, d_in, d_in)


def add_block(out: Tensor, blocks: Tensor) -> None:
    """Add :func:`kronecker_block`'s ``blocks`` into ``out`` ``(d_out·d_in, d_out·d_in)`` (a
    view into a larger matrix will do), in place."""
    d_out, _, d_in, _ = blocks.shape
    out.view(d_out, d_in, d_out, d_in).add_(blocks.permute(0, 2, 1, 3))


def block_matvec(blocks: Tensor, v: Tensor) -> Tensor:
    """The block of :func:`kronecker_block` times ``v`` ``(d_out·d_in,)``."""
    d_out, _, d_in, _ = blocks.shape
    return torch.einsum("abij,bj->ai", blocks, v.view(d_out, d_in)).reshape(-1)
