"""HessianOperator against dense float64 Hessians from torch.autograd.functional.hessian."""

import copy

import pytest
import torch
from helpers import dense_reference, rel_err
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from hessnoise import models
from hessnoise.curvature import HessianOperator, gradient

F64 = torch.float64
MODES = ["auto", "rev-rev", "fwd-rev"]


@pytest.fixture
def mlp_data():
    torch.manual_seed(0)
    net = models.mlp(6, [9, 5], 4, activation="tanh", seed=1)
    x = torch.randn(21, 6, dtype=F64)
    y = torch.randint(0, 4, (21,))
    return net, nn.CrossEntropyLoss(label_smoothing=0.1), x, y


def bn_cnn():
    torch.manual_seed(0)
    net = models.small_cnn(in_channels=2, n_classes=3, width=3, side=6, seed=2)
    bn = net[1]
    bn.running_mean.copy_(torch.randn(3, dtype=F64))  # non-trivial statistics, so eval mode matters
    bn.running_var.copy_(torch.rand(3, dtype=F64) + 0.5)
    x = torch.randn(13, 2, 6, 6, dtype=F64)
    y = torch.randint(0, 3, (13,))
    return net, nn.CrossEntropyLoss(), x, y


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("reuse", [True, False])
@pytest.mark.parametrize("merge", [True, False])
def test_uneven_batches_are_exactly_sample_weighted(mlp_data, mode, reuse, merge):
    net, loss, x, y = mlp_data
    href = dense_reference(net, loss, x, y)  # the Hessian of the mean over all 21 samples
    sizes = [7, 3, 10, 1]
    batches = list(zip(x.split(sizes), y.split(sizes), strict=True))
    op = HessianOperator(net, loss, batches, mode=mode, reuse_graph=reuse, merge_batches=merge)
    eye = torch.eye(op.dim, dtype=F64)
    assert rel_err(op(eye), href) < 1e-10  # float64 rounding over a few hundred flops
    for i in (0, op.dim // 2, op.dim - 1):  # one vector at a time, as Lanczos asks
        assert rel_err(op(eye[i]), href[i]) < 1e-10


def test_dataloader_input_and_reduction_sum(mlp_data):
    net, loss, x, y = mlp_data
    href = dense_reference(net, loss, x, y)
    loader = DataLoader(TensorDataset(x, y), batch_size=6, shuffle=False)
    op = HessianOperator(net, loss, loader)
    v = torch.randn(op.dim, dtype=F64)
    assert rel_err(op(v), href @ v) < 1e-10
    summed = nn.CrossEntropyLoss(label_smoothing=0.1, reduction="sum")
    op_sum = HessianOperator(net, summed, loader, reduction="sum")
    assert rel_err(op_sum(v), href @ v) < 1e-10


@pytest.mark.parametrize("mode", MODES)
def test_cnn_with_batchnorm_in_eval_mode(mode):
    net, loss, x, y = bn_cnn()
    href = dense_reference(net, loss, x, y)
    net.train()  # the caller's mode; the operator must use eval mode and give it back
    batches = list(zip(x.split([5, 8]), y.split([5, 8]), strict=True))
    op = HessianOperator(net, loss, batches, mode=mode)
    v = torch.randn(3, op.dim, dtype=F64)
    assert rel_err(op(v), v @ href) < 1e-10
    assert net.training and all(m.training for m in net.modules())


def test_nothing_of_the_callers_is_written():
    net, loss, x, y = bn_cnn()
    for p in net.parameters():
        p.grad = torch.full_like(p, 7.0)
    before = {
        n: t.detach().clone()
        for n, t in {**dict(net.named_parameters()), **dict(net.named_buffers())}.items()
    }
    net.train()
    net[1].eval()  # a mixed state must come back exactly
    modes = [m.training for m in net.modules()]
    op = HessianOperator(net, loss, (x, y))
    op(torch.randn(op.dim, dtype=F64))
    op(torch.randn(4, op.dim, dtype=F64))
    op.loss_and_gradient()
    after = {**dict(net.named_parameters()), **dict(net.named_buffers())}
    for n, t in before.items():
        assert torch.equal(t, after[n].detach()), n
    assert all(torch.equal(p.grad, torch.full_like(p, 7.0)) for p in net.parameters())
    assert [m.training for m in net.modules()] == modes


def test_train_mode_dropout_and_batchnorm_need_opt_in():
    net = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.Tanh(), nn.Linear(4, 2)).double()
    x, y = torch.randn(10, 3, dtype=F64), torch.randint(0, 2, (10,))
    with pytest.raises(
        ValueError, match=r"train_mode=True on a model with 1 \(Dropout\).*allow_stochastic=True"
    ):
        HessianOperator(net, nn.CrossEntropyLoss(), (x, y), train_mode=True)
    cnn, loss, xc, yc = bn_cnn()
    with pytest.raises(ValueError, match="BatchNorm2d"):
        HessianOperator(cnn, loss, (xc, yc), train_mode=True)
    # eval mode (the default) is deterministic even with dropout in the model
    op = HessianOperator(net.train(), nn.CrossEntropyLoss(), (x, y))
    v = torch.randn(op.dim, dtype=F64)
    assert torch.equal(op(v), op(v))
    # opted in: train-mode batch norm is allowed, and the caller's running stats survive
    stats = cnn[1].running_mean.clone()
    op_bn = HessianOperator(cnn, loss, (xc, yc), train_mode=True, allow_stochastic=True)
    op_bn(torch.randn(op_bn.dim, dtype=F64))
    assert torch.equal(cnn[1].running_mean, stats)


def test_graph_is_reused_for_sequential_products(mlp_data):
    net, loss, x, y = mlp_data
    calls = []
    hook = net[0].register_forward_hook(lambda *a: calls.append(1))
    op = HessianOperator(net, loss, (x, y), reuse_graph=True)
    n0 = len(calls)  # the activation-size probe
    for _ in range(5):
        op(torch.randn(op.dim, dtype=F64))
    assert len(calls) - n0 == 1  # one forward for five products
    op_fresh = HessianOperator(net, loss, (x, y), reuse_graph=False)
    n1 = len(calls)
    for _ in range(5):
        op_fresh(torch.randn(op_fresh.dim, dtype=F64))
    assert len(calls) - n1 == 5
    hook.remove()


def test_float32_agrees_with_float64(mlp_data):
    net, loss, x, y = mlp_data
    net32, x32 = copy.deepcopy(net).float(), x.float()
    # Reference at the float32-rounded parameters and inputs, computed in float64.
    href = dense_reference(copy.deepcopy(net32).double(), loss, x32.double(), y)
    op32 = HessianOperator(net32, loss, (x32, y))
    v = torch.randn(2, op32.dim)
    assert op32(v).dtype == torch.float32
    assert rel_err(op32(v).double(), v.double() @ href) < 1e-5  # float32 rounding
    op64 = HessianOperator(net32, loss, (x32, y), dtype=F64)  # float32 model, float64 maths
    assert rel_err(op64(v.double()), v.double() @ href) < 1e-10


def test_gradient_matches_autograd(mlp_data):
    net, loss, x, y = mlp_data
    value, g = gradient(net, loss, list(zip(x.split([4, 17]), y.split([4, 17]), strict=True)))
    net.zero_grad()
    ref = loss(net(x), y)
    ref.backward()
    ref_g = torch.cat([p.grad.reshape(-1) for p in net.parameters()])
    assert abs(value - ref.item()) < 1e-14 and rel_err(g, ref_g) < 1e-12


def test_loss_without_forward_mode_falls_back_to_double_backward():
    net = nn.Linear(3, 2).double()
    x, y = torch.randn(9, 3, dtype=F64), torch.randn(9, 2, dtype=F64)
    href = dense_reference(net, nn.MSELoss(), x, y)
    op = HessianOperator(net, nn.MSELoss(), (x, y))
    assert rel_err(op(torch.eye(op.dim, dtype=F64)), href) < 1e-12
    assert "ZeroTensor" in op.fwd_rev_failure
    with pytest.raises(ValueError, match="mode='fwd-rev' fails"):
        HessianOperator(net, nn.MSELoss(), (x, y), mode="fwd-rev")(torch.eye(op.dim, dtype=F64))


def test_frozen_parameters_are_constants(mlp_data):
    net, loss, x, y = mlp_data
    href = dense_reference(net, loss, x, y)
    op = HessianOperator(net, loss, (x, y), params=["2.weight", "2.bias"])
    k = net[0].weight.numel() + net[0].bias.numel()
    m = op.dim
    assert rel_err(op(torch.eye(m, dtype=F64)), href[k : k + m, k : k + m]) < 1e-10


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(mlp_data):
    net, loss, x, y = mlp_data
    href = dense_reference(net, loss, x, y)
    op = HessianOperator(net.cuda(), loss, (x, y))
    v = torch.randn(3, op.dim, dtype=F64)
    assert rel_err(op(v.cuda()).cpu(), v @ href) < 1e-10


def test_bad_input_is_refused_before_computing(mlp_data):
    net, loss, x, y = mlp_data
    with pytest.raises(ValueError, match=r"mode='fast'.*'auto', 'rev-rev', 'fwd-rev'"):
        HessianOperator(net, loss, (x, y), mode="fast")
    with pytest.raises(ValueError, match=r"params=\['nope'\]"):
        HessianOperator(net, loss, (x, y), params=["nope"])
    with pytest.raises(ValueError, match="data must be a pair"):
        HessianOperator(net, loss, x)
    with pytest.raises(ValueError, match="reduction='max'"):
        HessianOperator(net, loss, (x, y), reduction="max")
    with pytest.raises(ValueError, match="dtype=torch.int64"):
        HessianOperator(net, loss, (x, y), dtype=torch.int64)
    op = HessianOperator(net, loss, (x, y))
    with pytest.raises(
        ValueError, match=rf"v must have shape \(P,\) or \(k, P\) with P = {op.dim}"
    ):
        op(torch.zeros(op.dim + 1, dtype=F64))
