"""Scale-invariant groups against the identities they must satisfy: the loss unchanged by
rescaling each group, the Hessian transformed as H(S_cθ) = S_c⁻¹H(θ)S_c⁻¹ (dense float64
Hessians from ``torch.autograd.functional.hessian``), the weighted trace tr(DH) unchanged while
the plain trace moves, and the groups found in the paper's networks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hessnoise import models
from hessnoise.losses import cross_entropy, smoothed_targets
from hessnoise.params import FlatNet
from hessnoise.scale_invariance import invariant_groups, partition

F64 = torch.float64


def tiny_bn_net(eps: float = 1e-30) -> nn.Sequential:
    """The projected paths' conv-net, tiny; BatchNorm's ε set to ``eps`` (1e-30 against
    variances of order one: the invariance is exact to rounding, so that identities hold to
    rounding; torch refuses ε = 0)."""
    net = models.conv_net(1, 10, side=6, channels=(3, 4), hidden=8, dtype=F64, seed=1)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps = eps
    return net


def data(n: int = 24):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 6, 6, generator=gen, dtype=F64)
    return x, smoothed_targets(torch.arange(n) % 10, 10, 0.1).to(F64)


def test_groups_of_the_conv_net():
    found = invariant_groups(tiny_bn_net())
    # conv → BN directly: each output channel's weight row; BN₁ → ReLU → conv₂ → BN₂: (γ₁, β₁)
    assert found.rows == ("0.weight", "3.weight") and found.with_bias == ()
    assert found.whole == (("1.weight", "1.bias"),)
    part = partition(tiny_bn_net())
    assert part.n_groups == 3 + 4 + 1 + 8  # 7 rows, BN₁'s pair, then every other tensor
    assert int(part.invariant.sum()) == 8 and part.invariant[:8].all()
    assert part.modules == ("0", "1", "3", "4", "7", "9")
    assert part.kinds == ("Conv2d", "BatchNorm2d", "Conv2d", "BatchNorm2d", "Linear", "Linear")
    assert (part.labels >= 0).all() and part.labels.numel() == models.n_params(tiny_bn_net())
    no_bn = models.conv_net(1, 10, side=6, channels=(3, 4), hidden=8, batch_norm=False)
    assert not partition(no_bn).invariant.any()


def test_groups_of_the_paper_networks():
    vgg = invariant_groups(models.build("vgg16", n_classes=10))
    assert len(vgg.rows) == 13  # every convolution is followed by BatchNorm
    assert len(vgg.whole) == 12  # every BatchNorm but the last feeds a convolution
    resnet = invariant_groups(models.build("preact-resnet18", n_classes=10))
    # conv1 → bn2 in each of the 8 blocks; bn1 only where no shortcut convolution shares it
    assert len(resnet.rows) == 8 and len(resnet.whole) == 5
    assert all(g[0].endswith("bn1.weight") for g in resnet.whole)
    assert invariant_groups(models.build("convnet4", n_classes=10)).rows == ()


def test_a_convolution_before_relu_then_batchnorm_takes_its_bias_along():
    net = nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.ReLU(), nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(3 * 4 * 4, 10)
    ).to(F64)
    found = invariant_groups(net)
    assert found.rows == ("0.weight",) and found.with_bias == ("0.bias",)
    part = partition(net)
    assert part.names[0] == "0.weight[0]+bias"
    assert (part.labels[:9] == 0).all() and part.labels[27] == 0  # row 0 and bias 0


def loss_of(net: nn.Module):
    flat = FlatNet(net)
    x, q = data()
    return flat, lambda theta: cross_entropy(flat(theta, x), q)


def test_rescaling_leaves_loss_and_invariant_trace_and_moves_the_plain_trace():
    net = tiny_bn_net()
    flat, loss = loss_of(net)
    part = partition(net)
    theta = flat.theta0()
    gen = torch.Generator().manual_seed(3)
    factors = torch.where(
        part.invariant, 0.3 + 3 * torch.rand(part.n_groups, generator=gen, dtype=F64), 1.0
    )
    scaled = part.rescale(theta, factors)
    assert loss(scaled).item() == pytest.approx(loss(theta).item(), rel=1e-12)
    h = torch.autograd.functional.hessian(loss, theta)
    h_scaled = torch.autograd.functional.hessian(loss, scaled)
    s = factors[part.labels]
    # H(S_c θ) = S_c⁻¹ H(θ) S_c⁻¹, entry by entry
    assert torch.allclose(h_scaled, h / s[:, None] / s[None, :], rtol=1e-7, atol=1e-10)
    inv = (part.weights(theta)[part.labels] * h.diagonal()).sum()
    inv_scaled = (part.weights(scaled)[part.labels] * h_scaled.diagonal()).sum()
    assert inv_scaled.item() == pytest.approx(inv.item(), rel=1e-7)
    assert abs(h_scaled.trace().item() / h.trace().item() - 1) > 0.05
    # Euler: the gradient of a group is orthogonal to it
    (g,) = torch.autograd.grad(loss(theta.requires_grad_(True)), theta)
    for k in torch.nonzero(part.invariant).flatten():
        idx = part.labels == k
        assert (g[idx] @ theta[idx]).abs().item() < 1e-10 * (1 + g[idx].norm().item())


def test_batchnorm_epsilon_breaks_the_invariance_only_slightly():
    flat, loss = loss_of(tiny_bn_net(eps=1e-5))
    part = partition(flat.module)
    theta = flat.theta0()
    factors = torch.where(part.invariant, torch.tensor(2.0, dtype=F64), 1.0)
    change = abs(loss(part.rescale(theta, factors)) / loss(theta) - 1).item()
    assert 0 < change < 1e-4  # L(cθ_g; ε) = L(θ_g; ε/c²): of order ε / Var


def test_norms_and_per_layer_sums():
    net = tiny_bn_net()
    part = partition(net)
    theta = FlatNet(net).theta0()
    assert part.group_norms(theta).pow(2).sum().item() == pytest.approx(theta.pow(2).sum().item())
    per_layer = part.layer_norms(theta)
    direct = [
        torch.cat([p.reshape(-1) for p in net.get_submodule(m).parameters()]).norm().item()
        for m in part.modules
    ]
    assert per_layer.tolist() == pytest.approx(direct)
