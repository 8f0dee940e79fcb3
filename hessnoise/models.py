"""The networks of the experiments.

* :func:`mlp`: fully connected networks, e.g. the paper's one-hidden-layer MLP of
  Section 4.1 (14×14 inputs, 30 hidden units, 10 classes: 6,220 parameters).
* :func:`small_cnn`: a small convolutional network with BatchNorm, used to test that the
  curvature code handles normalization layers.
* :func:`conv_net`: the small convolutional network of the projected-path chapter (Section
  2.1.1 at CPU scale), with or without BatchNorm.
* The paper's networks for CIFAR and MNIST (Section 2.1.1, App. A.2): :func:`preact_resnet18`
  (He et al., 2016b), :func:`vgg16` (Simonyan & Zisserman, 2015, the CIFAR variant with
  BatchNorm and one linear classifier), :func:`densenet_bc` (Huang et al., 2017, bottleneck and
  compression, blocks [6, 12, 24, 16], growth rate 12) and :func:`convnet4` (two convolutions
  and two linear layers for MNIST).  :func:`build` makes any of them by name.

BatchNorm in the networks built for the projected paths keeps no running statistics
(``track_running_stats=False``): it always normalizes with the statistics of the batch it is
given, so that a network is a function of θ and its input batch alone, and the loss of a fixed
batch is a fixed function of θ (what projection and line connectedness need).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hessnoise._validate import choice, positive_int

# PyTorch's default initializers draw from the global generator, which all threads share.
_INIT_LOCK = threading.RLock()  # re-entrant: a builder may call another


@contextmanager
def seeded_init(seed: int) -> Iterator[None]:
    """Draws from the global generator seeded with ``seed``, its state restored afterwards,
    one thread at a time: networks built in parallel threads (the trace chapter's runs) get
    the weights a lone build gives, whatever the interleaving."""
    with _INIT_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU, "softplus": nn.Softplus}


def mlp(
    d_in: int,
    hidden: Sequence[int],
    d_out: int,
    *,
    activation: str = "tanh",
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> nn.Sequential:
    """A fully connected network ``d_in → hidden[0] → … → d_out`` with PyTorch's default init,
    drawn from ``seed``.  ``activation`` is one of ``'tanh' | 'relu' | 'gelu' | 'softplus'``."""
    positive_int("d_in", d_in)
    positive_int("d_out", d_out)
    for i, h in enumerate(hidden):
        positive_int(f"hidden[{i}]", h)
    choice("activation", activation, tuple(ACTIVATIONS))
    widths = [d_in, *hidden, d_out]
    layers: list[nn.Module] = []
    with seeded_init(seed):
        for k, (a, b) in enumerate(itertools.pairwise(widths)):
            layers.append(nn.Linear(a, b))
            if k < len(widths) - 2:
                layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers).to(dtype=dtype, device=device)


def small_cnn(
    in_channels: int = 1,
    n_classes: int = 10,
    *,
    width: int = 4,
    side: int = 8,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> nn.Sequential:
    """conv(3×3) → BatchNorm → tanh → conv(3×3, stride 2) → tanh → linear, for ``side×side``
    inputs of ``in_channels`` channels."""
    positive_int("width", width)
    positive_int("side", side)
    with seeded_init(seed):
        net = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.Tanh(),
            nn.Conv2d(width, width, 3, stride=2, padding=1),
            nn.Tanh(),
            nn.Flatten(),
            nn.Linear(width * ((side + 1) // 2) ** 2, n_classes),
        )
    return net.to(dtype)


def n_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --------------------------------------------------------------------------------------------
# The networks of the projected paths (Section 2.1.1, App. A.2)
# --------------------------------------------------------------------------------------------
def _bn(channels: int) -> nn.BatchNorm2d:
    """BatchNorm with batch statistics only: no running averages, no buffers."""
    return nn.BatchNorm2d(channels, track_running_stats=False)


def conv_net(
    in_channels: int = 1,
    n_classes: int = 10,
    *,
    side: int = 14,
    channels: tuple[int, int] = (16, 16),
    hidden: int = 128,
    batch_norm: bool = True,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> nn.Sequential:
    """conv(3×3, stride 2) → [BN] → ReLU → conv(3×3, stride 2) → [BN] → ReLU → linear(hidden)
    → ReLU → linear(n_classes), for ``side×side`` inputs ``(B, in_channels, side, side)``.

    Four weight layers.  The two strided convolutions cut the image to a quarter of its side
    before the first linear layer, so that a full-batch gradient over thousands of images costs
    little: projections by full-batch gradient descent dominate the chapter's run time.  With
    the defaults (14×14 inputs) it has 36,730 parameters with BatchNorm, 36,666 without.
    """
    positive_int("side", side)
    positive_int("hidden", hidden)
    for i, c in enumerate(channels):
        positive_int(f"channels[{i}]", c)
    c1, c2 = channels
    out_side = ((side + 1) // 2 + 1) // 2
    with seeded_init(seed):
        layers: list[nn.Module] = [nn.Conv2d(in_channels, c1, 3, stride=2, padding=1)]
        layers += [_bn(c1)] if batch_norm else []
        layers += [nn.ReLU(), nn.Conv2d(c1, c2, 3, stride=2, padding=1)]
        layers += [_bn(c2)] if batch_norm else []
        layers += [
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(c2 * out_side * out_side, hidden),
            nn.ReLU(),
            nn.Linear(hidden, n_classes),
        ]
        net = nn.Sequential(*layers)
    return net.to(dtype=dtype, device=device)


class _PreActBlock(nn.Module):
    """BN → ReLU → conv3×3 → BN → ReLU → conv3×3, plus the identity (or a strided 1×1
    convolution of the pre-activated input when the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.bn1 = _bn(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = _bn(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.shortcut = (
            nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)
            if stride != 1 or c_in != c_out
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(out)
        out = self.conv2(F.relu(self.bn2(self.conv1(out))))
        return out + skip


class PreActResNet(nn.Module):
    """Pre-activation ResNet for 32×32 images (He et al., 2016b): a 3×3 stem with 64 channels,
    four stages of :class:`_PreActBlock` with 64, 128, 256, 512 channels (strides 1, 2, 2, 2),
    4×4 average pooling and a linear classifier."""

    def __init__(self, blocks: Sequence[int], n_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, 64, 3, padding=1, bias=False)
        layers: list[nn.Module] = []
        c_in = 64
        for stage, (c_out, n) in enumerate(zip((64, 128, 256, 512), blocks, strict=True)):
            for k in range(n):
                layers.append(_PreActBlock(c_in, c_out, 2 if (stage > 0 and k == 0) else 1))
                c_in = c_out
        self.layers = nn.Sequential(*layers)
        self.linear = nn.Linear(512, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.layers(self.stem(x))
        return self.linear(F.avg_pool2d(out, 4).flatten(1))


VGG16_CHANNELS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                  512, 512, 512, "M")  # fmt: skip


class _DenseLayer(nn.Module):
    """BN → ReLU → conv1×1 (4k channels) → BN → ReLU → conv3×3 (k channels), concatenated to
    its input: DenseNet's bottleneck layer with growth rate k."""

    def __init__(self, c_in: int, growth: int) -> None:
        super().__init__()
        self.bn1 = _bn(c_in)
        self.conv1 = nn.Conv2d(c_in, 4 * growth, 1, bias=False)
        self.bn2 = _bn(4 * growth)
        self.conv2 = nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(F.relu(self.bn2(self.conv1(F.relu(self.bn1(x))))))
        return torch.cat([out, x], 1)


class _Transition(nn.Module):
    """BN → ReLU → conv1×1 → 2×2 average pooling, between dense blocks."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.bn = _bn(c_in)
        self.conv = nn.Conv2d(c_in, c_out, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(self.conv(F.relu(self.bn(x))), 2)


class DenseNet(nn.Module):
    """DenseNet-BC for 32×32 images (Huang et al., 2017): a 3×3 stem with 2k channels, dense
    blocks of bottleneck layers with growth rate k, transitions that halve the channels
    (compression 0.5) and the resolution, then BN → ReLU → 4×4 average pooling → linear."""

    def __init__(
        self, blocks: Sequence[int], growth: int, n_classes: int, in_channels: int = 3
    ) -> None:
        super().__init__()
        c = 2 * growth
        self.stem = nn.Conv2d(in_channels, c, 3, padding=1, bias=False)
        stages: list[nn.Module] = []
        for i, n in enumerate(blocks):
            for _ in range(n):
                stages.append(_DenseLayer(c, growth))
                c += growth
            if i < len(blocks) - 1:
                stages.append(_Transition(c, c // 2))
                c //= 2
        self.stages = nn.Sequential(*stages)
        self.bn = _bn(c)
        self.linear = nn.Linear(c, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn(self.stages(self.stem(x))))
        return self.linear(F.avg_pool2d(out, 4).flatten(1))


def _seeded(seed: int, make, dtype: torch.dtype, device: torch.device | str) -> nn.Module:
    with seeded_init(seed):
        net = make()
    return net.to(dtype=dtype, device=device)


def preact_resnet18(
    n_classes: int = 10,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> nn.Module:
    """PreAct-ResNet18 for CIFAR (11,171,146 parameters for 10 classes)."""
    positive_int("n_classes", n_classes)
    return _seeded(seed, lambda: PreActResNet((2, 2, 2, 2), n_classes), dtype, device)


def vgg16(
    n_classes: int = 10,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> nn.Sequential:
    """VGG16 for CIFAR: thirteen conv3×3 → BN → ReLU layers in five stages ending in 2×2
    max pooling, then one linear classifier 512 → ``n_classes`` (14,728,266 parameters for
    10 classes), as commonly trained on CIFAR-10; the ImageNet VGG16's three-layer classifier
    is not used."""
    positive_int("n_classes", n_classes)

    def make() -> nn.Sequential:
        layers: list[nn.Module] = []
        c_in = 3
        for c in VGG16_CHANNELS:
            if c == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c_in, c, 3, padding=1), _bn(c), nn.ReLU()]
                c_in = c
        return nn.Sequential(*layers, nn.Flatten(), nn.Linear(512, n_classes))

    return _seeded(seed, make, dtype, device)


def densenet_bc(
    n_classes: int = 100,
    *,
    blocks: Sequence[int] = (6, 12, 24, 16),
    growth: int = 12,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> nn.Module:
    """DenseNet-BC with the paper's blocks [6, 12, 24, 16] and growth rate 12 (App. A.2.1):
    1,000,618 parameters for 10 classes, 1,035,268 for CIFAR-100."""
    positive_int("n_classes", n_classes)
    positive_int("growth", growth)
    for i, n in enumerate(blocks):
        positive_int(f"blocks[{i}]", n)
    return _seeded(seed, lambda: DenseNet(tuple(blocks), growth, n_classes), dtype, device)


def convnet4(
    n_classes: int = 10,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> nn.Sequential:
    """The "4-layer ConvNet" of App. A.2.2 for 28×28 MNIST, which the paper does not specify:
    we take PyTorch's MNIST example network without dropout, conv(32, 3×3) → ReLU →
    conv(64, 3×3) → ReLU → 2×2 max pooling → linear(128) → ReLU → linear(10): four weight
    layers, 1,199,882 parameters."""
    positive_int("n_classes", n_classes)

    def make() -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(9216, 128), nn.ReLU(), nn.Linear(128, n_classes),
        )  # fmt: skip

    return _seeded(seed, make, dtype, device)


PAPER_PARAM_COUNTS = {
    ("preact-resnet18", 10): 11_171_146,
    ("vgg16", 10): 14_728_266,
    ("densenet-bc", 10): 1_000_618,
    ("densenet-bc", 100): 1_035_268,
    ("convnet4", 10): 1_199_882,
}
"""Parameter counts of the paper's networks as built here (checked in the tests); the first
two are the counts of the widely used CIFAR implementations of these networks."""

ARCHITECTURES = ("conv-net", "preact-resnet18", "vgg16", "densenet-bc", "convnet4")


def build(
    name: str,
    *,
    n_classes: int = 10,
    in_channels: int = 1,
    side: int = 14,
    batch_norm: bool = True,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> nn.Module:
    """One of :data:`ARCHITECTURES` by name.  ``in_channels``, ``side`` and ``batch_norm``
    apply to ``'conv-net'`` only; the paper's networks take 3×32×32 (CIFAR) or 1×28×28
    (``'convnet4'``) inputs and always have their BatchNorm (``convnet4`` has none)."""
    choice("name", name, ARCHITECTURES)
    kw = {"seed": seed, "dtype": dtype, "device": device}
    if name == "conv-net":
        return conv_net(in_channels, n_classes, side=side, batch_norm=batch_norm, **kw)
    make = {"preact-resnet18": preact_resnet18, "vgg16": vgg16, "densenet-bc": densenet_bc,
            "convnet4": convnet4}[name]  # fmt: skip
    return make(n_classes, **kw)
