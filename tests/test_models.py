"""The networks: parameter counts against the published ones and closed-form counts, shapes,
BatchNorm without running statistics, and batched evaluation over stacked parameters."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from torch.func import functional_call

from hessnoise import models
from hessnoise.params import FlatNet


@pytest.mark.parametrize(("name", "classes"), sorted(models.PAPER_PARAM_COUNTS))
def test_paper_networks_have_their_published_parameter_counts(name, classes):
    # PreAct-ResNet18 and VGG16: the counts of the widely used CIFAR implementations
    # (11,171,146 and 14,728,266); DenseNet-BC [6, 12, 24, 16], k = 12: 1,000,618 for 10 classes
    net = models.build(name, n_classes=classes)
    assert models.n_params(net) == models.PAPER_PARAM_COUNTS[name, classes]


def test_parameter_counts_in_closed_form():
    # convnet4: conv 1→32 (3×3), conv 32→64 (3×3), 12·12·64 → 128 → 10, with biases
    assert models.n_params(models.convnet4()) == (
        32 * 9 + 32 + 64 * 32 * 9 + 64 + 9216 * 128 + 128 + 128 * 10 + 10
    )
    # conv-net on 14×14: 1→16 and 16→16 (3×3, stride 2) to 4×4, 256 → 128 → 10; BN: 2c each
    no_bn = 16 * 9 + 16 + 16 * 16 * 9 + 16 + 256 * 128 + 128 + 128 * 10 + 10
    assert models.n_params(models.conv_net(batch_norm=False)) == no_bn == 36_666
    assert models.n_params(models.conv_net()) == no_bn + 2 * 16 + 2 * 16 == 36_730
    # DenseNet-BC: the classifier sees 384 channels, so CIFAR-100 adds 90·385 parameters
    assert models.PAPER_PARAM_COUNTS["densenet-bc", 100] - 90 * 385 == 1_000_618


@pytest.mark.parametrize("name", ["preact-resnet18", "vgg16", "densenet-bc"])
def test_cifar_networks_map_images_to_logits_without_buffers(name):
    net = models.build(name, n_classes=7)
    assert list(net.buffers()) == []  # BatchNorm keeps no running statistics
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_convnet4_takes_mnist_images():
    assert models.convnet4()(torch.randn(3, 1, 28, 28)).shape == (3, 10)


def test_conv_net_options_and_seed():
    a, b = models.conv_net(seed=1), models.conv_net(seed=1)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    net = models.conv_net(3, 4, side=8, channels=(2, 5), hidden=6, dtype=torch.float64)
    assert net(torch.randn(2, 3, 8, 8, dtype=torch.float64)).shape == (2, 4)
    assert not any(isinstance(m, torch.nn.BatchNorm2d)
                   for m in models.conv_net(batch_norm=False).modules())  # fmt: skip
    with pytest.raises(ValueError, match="name='resnet50'"):
        models.build("resnet50")
    with pytest.raises(ValueError, match=r"channels\[1\]=0"):
        models.conv_net(channels=(4, 0))


def test_batchnorm_uses_the_statistics_of_the_batch_it_is_given():
    net = models.conv_net(side=6, channels=(3, 4), hidden=5, dtype=torch.float64)
    x = torch.randn(8, 1, 6, 6, dtype=torch.float64)
    # train or eval mode: always batch statistics, so the mode does not matter
    out_train = net.train()(x)
    assert torch.equal(net.eval()(x), out_train)
    # the output of an image depends on the rest of its batch
    assert not torch.allclose(net(x[:4]), out_train[:4])


def test_stacked_parameters_evaluate_in_one_batched_call():
    net = models.conv_net(side=6, channels=(3, 4), hidden=5, dtype=torch.float64)
    flat = FlatNet(net)
    thetas = flat.theta0() + 0.1 * torch.randn(4, flat.dim, dtype=torch.float64)
    x = torch.randn(8, 1, 6, 6, dtype=torch.float64)
    batched = torch.vmap(lambda th: flat(th, x))(thetas)
    for th, out in zip(thetas, batched, strict=True):
        ref = functional_call(net, flat.params(th), (x,))
        torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)


def test_networks_built_in_parallel_threads_get_a_lone_build_weights():
    # PyTorch's initializers draw from the global generator: without the lock in
    # models.seeded_init, threads building at once took each other's draws (the trace
    # chapter's parallel runs then differed from sequential ones).
    def build(seed: int) -> torch.Tensor:
        net = models.mlp(50, [200, 200], 10, seed=seed)
        return torch.cat([p.detach().reshape(-1) for p in net.parameters()])

    alone = [build(s) for s in range(8)]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(10):
            together = list(pool.map(build, range(8)))
            assert all(torch.equal(a, b) for a, b in zip(together, alone, strict=True))
