"""The Kronecker form of a linear layer's weight block, against torch.autograd.functional.hessian,
and the fall-back to column-by-column products where its assumption (independent samples) or
its applicability (one call on (n, d_in) inputs) fails."""

import pytest
import torch
import torch.nn.functional as F
from helpers import dense_reference, rel_err
from torch import nn

from hessnoise import models
from hessnoise.curvature import HessianOperator, hessian_matrix
from hessnoise.curvature.linear_block import add_block, block_matvec, kronecker_block

F64 = torch.float64


def test_kronecker_block_is_the_sum_of_kronecker_products():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(6, 3, 3, dtype=F64, generator=gen)
    z = z + z.transpose(1, 2)
    a = torch.randn(6, 4, dtype=F64, generator=gen)
    ref = sum(torch.kron(z[n], torch.outer(a[n], a[n])) for n in range(6))
    v = torch.randn(12, dtype=F64, generator=gen)
    for budget in (1, 1 << 30):  # one sample per chunk, and all at once
        blocks = kronecker_block(z, a, memory_budget=budget)
        big = torch.ones(15, 15, dtype=F64)  # the block goes into a view of a larger matrix
        add_block(big[2:14, 3:15], blocks)
        block = big[2:14, 3:15] - 1
        assert rel_err(block, ref) < 1e-14 and torch.equal(block, block.T)
        assert (big[:2] == 1).all() and (big[:, :3] == 1).all() and (big[14:] == 1).all()
        assert rel_err(block_matvec(blocks, v), ref @ v) < 1e-14


@pytest.mark.parametrize("merge", [True, False])
def test_mlp_first_layer_block_is_exact(merge):
    torch.manual_seed(0)
    net = models.mlp(9, [5], 4, seed=3)  # the first weight (45) is the largest tensor
    x, y = torch.randn(30, 9, dtype=F64), torch.randint(0, 4, (30,))
    loss = nn.CrossEntropyLoss(label_smoothing=0.1)
    href = dense_reference(net, loss, x, y)
    batches = list(zip(x.split([11, 19]), y.split([11, 19]), strict=True))
    op = HessianOperator(net, loss, batches, merge_batches=merge)
    h = hessian_matrix(op)
    assert op.linear_blocks == ["0.weight"]
    # float64 rounding over sums of a few hundred products
    assert rel_err(h, href) < 1e-12 and torch.equal(h, h.T)


def test_samples_that_interact_fall_back_to_products():
    torch.manual_seed(1)
    net = models.mlp(9, [5], 4, seed=3)
    x, y = torch.randn(20, 9, dtype=F64), torch.randint(0, 4, (20,))

    def coupled(out, target):  # the squared batch mean couples every pair of samples
        return F.cross_entropy(out, target) + out.mean(0).pow(2).sum()

    op = HessianOperator(net, coupled, (x, y))
    h = hessian_matrix(op)
    assert op.linear_blocks == []
    assert rel_err(h, dense_reference(net, coupled, x, y)) < 1e-12 and torch.equal(h, h.T)


def test_shared_or_sequence_layers_fall_back_to_products():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(6, 6)
            self.out = nn.Linear(6, 2)

        def forward(self, x):
            return self.out(torch.tanh(self.lin(torch.tanh(self.lin(x)))))

    torch.manual_seed(2)
    net = Twice().double()
    x, y = torch.randn(15, 6, dtype=F64), torch.randint(0, 2, (15,))
    loss = nn.CrossEntropyLoss()
    op = HessianOperator(net, loss, (x, y))
    h = hessian_matrix(op)
    assert op.linear_blocks == []
    assert rel_err(h, dense_reference(net, loss, x, y)) < 1e-12

    seq = nn.Sequential(nn.Linear(6, 10), nn.Tanh(), nn.Flatten(), nn.Linear(20, 2)).double()
    xs = torch.randn(8, 2, 6, dtype=F64)  # the first layer sees (n, 2, 6): not (n, d_in)
    ys = torch.randint(0, 2, (8,))
    op = HessianOperator(seq, loss, (xs, ys))
    h = hessian_matrix(op)
    assert op.linear_blocks == []
    assert rel_err(h, dense_reference(seq, loss, xs, ys)) < 1e-12


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_dense_hessian_matches_cpu_reference():
    torch.manual_seed(0)
    net = models.mlp(16, [12], 10, seed=1)
    x, y = torch.randn(200, 16, dtype=F64), torch.randint(0, 10, (200,))
    loss = nn.CrossEntropyLoss(label_smoothing=0.1)
    href = dense_reference(net, loss, x, y)
    op = HessianOperator(net.cuda(), loss, (x.cuda(), y.cuda()))
    h = hessian_matrix(op)
    assert h.is_cuda and op.linear_blocks == ["0.weight"]
    assert rel_err(h.cpu(), href) < 1e-12 and torch.equal(h, h.T)
