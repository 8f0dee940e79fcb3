"""FlatNet: a module as f(θ, x), against the module itself and torch's own flattening."""

from __future__ import annotations

import torch
from torch.nn.utils import parameters_to_vector

from hessnoise import models
from hessnoise.params import FlatNet

F64 = torch.float64


def test_flat_net_is_the_module_at_its_own_parameters(gen):
    module = models.mlp(5, [7, 4], 3, seed=2)
    net = FlatNet(module)
    x = torch.randn(6, 5, dtype=F64, generator=gen)
    theta = net.theta0()
    assert torch.equal(theta, parameters_to_vector(module.parameters()))
    assert net.dim == theta.numel() == models.n_params(module)
    assert torch.equal(net(theta, x), module(x))
    assert torch.equal(net.flatten(net.params(theta)), theta)


def test_flat_net_evaluates_other_points_without_writing_the_module(gen):
    module = models.mlp(5, [7], 3, seed=2)
    net = FlatNet(module)
    before = net.theta0()
    theta = before + torch.randn(net.dim, dtype=F64, generator=gen)
    x = torch.randn(4, 5, dtype=F64, generator=gen)
    out = net(theta, x)
    assert torch.equal(net.theta0(), before)
    assert torch.allclose(out, net.write(theta)(x), atol=1e-15)


def test_flat_net_vmaps_over_stacked_parameters(gen):
    net = FlatNet(models.mlp(5, [7], 3, seed=2))
    thetas = net.theta0() + torch.randn(4, net.dim, dtype=F64, generator=gen)
    x = torch.randn(6, 5, dtype=F64, generator=gen)
    batched = torch.vmap(net, in_dims=(0, None))(thetas, x)
    for k in range(4):
        assert torch.allclose(batched[k], net(thetas[k], x), atol=1e-15)


def test_train_mode_batch_norm_does_not_touch_the_module_buffers(gen):
    module = models.small_cnn(in_channels=1, n_classes=3, width=2, side=6, seed=0).train()
    net = FlatNet(module)
    before = {n: b.clone() for n, b in module.named_buffers()}
    net(net.theta0(), torch.randn(5, 1, 6, 6, dtype=F64, generator=gen))
    for n, b in module.named_buffers():
        assert torch.equal(b, before[n])
