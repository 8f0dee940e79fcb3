r"""The data, the network and the configuration of a projected path (Section 2.1.1, App. A.2).

* :class:`PathConfig` — one network on one data set and the protocol's hyperparameters;
  :class:`RandomLabelConfig` — App. A.2.2's split into a clean set A and a shuffled set B.
* :class:`Problem` — training and validation images with label-smoothed targets and the
  network f(θ, x) on one device, with the full-batch loss, its gradient and a batched loss at
  many θ at once (``torch.vmap`` over stacked parameters).
* :func:`setup` and :func:`setup_random_labels` — seeded, class-balanced subsets, standardized
  with the training images' per-channel statistics.

**The loss as a fixed function of θ.**  BatchNorm keeps no running statistics (see
:mod:`hessnoise.models`): it normalizes with the statistics of the batch it is given.  The
full-batch loss is the mean over fixed *chunks* of the training set (consecutive slices of
``chunk`` images; the whole set when ``chunk`` is ``None``), each normalized with its own
statistics: a fixed function of θ, which projection and line connectedness need.  SGD steps use
their mini-batch's statistics, as in ordinary training; the validation loss uses the chunks of
the validation set, with their own statistics.

Shapes: θ ``(P,)``; images ``(N, C, side, side)``; labels ``(N,)``; targets ``(N, K)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import cached_property

import torch
from torch import Tensor

from hessnoise import checkpoints, data, models
from hessnoise._validate import choice, number, positive_int
from hessnoise.losses import cross_entropy, smoothed_targets, target_entropy
from hessnoise.params import FlatNet

DTYPES = {"float32": torch.float32, "float64": torch.float64}
DATASETS = ("fashion-mnist", "mnist", "cifar10", "cifar100")
CIFAR_MODELS = ("preact-resnet18", "vgg16", "densenet-bc")


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PathConfig:
    """One network on one data set, and the protocol's hyperparameters.

    ``threshold`` is δ, the excess of the training loss over its floor H(q) below which a state
    counts as a minimum.  ``max_steps`` is the budget of one projection in gradient-descent
    steps; ``max_depth`` bounds the refinement (``None``: down to adjacent iterations, as in the
    paper).  ``chunk`` is the number of images per chunk of a full-batch evaluation (``None``:
    one chunk); it must divide both set sizes.  ``conv`` is (channels, channels, hidden) of
    :func:`hessnoise.models.conv_net`, used when ``model`` is ``'conv-net'``.
    """

    name: str
    dataset: str
    model: str
    n_train: int
    n_val: int
    size: int | None = None
    batch_norm: bool = True
    conv: tuple[int, int, int] = (16, 16, 128)
    eps: float = 0.1
    lr: float = 0.1
    momentum: float = 0.9
    batch_size: int = 500
    epochs: int = 150
    threshold: float = 0.005
    max_steps: int = 1000
    max_depth: int | None = None
    chunk: int | None = None
    dtype: str = "float32"
    checkpoint_every: int = 0
    download: bool = False

    def __post_init__(self) -> None:
        choice("dataset", self.dataset, DATASETS)
        choice("model", self.model, models.ARCHITECTURES)
        positive_int("n_train", self.n_train)
        positive_int("n_val", self.n_val)
        number("eps", self.eps, lo=0, hi=1, lo_open=True, hi_open=True)
        number("lr", self.lr, lo=0, lo_open=True)
        number("momentum", self.momentum, lo=0, hi=1, hi_open=True)
        positive_int("batch_size", self.batch_size)
        number("batch_size", self.batch_size, hi=self.n_train, integer=True)
        positive_int("epochs", self.epochs)
        number("threshold", self.threshold, lo=0, lo_open=True)
        positive_int("max_steps", self.max_steps)
        if self.max_depth is not None:
            number("max_depth", self.max_depth, lo=0, integer=True)
        if self.chunk is not None:
            positive_int("chunk", self.chunk)
            for name in ("n_train", "n_val"):
                if getattr(self, name) % self.chunk:
                    raise ValueError(f"chunk={self.chunk} must divide {name}={getattr(self, name)}")
        choice("dtype", self.dtype, tuple(DTYPES))
        number("checkpoint_every", self.checkpoint_every, lo=0, integer=True)
        cifar = self.dataset.startswith("cifar")
        if self.model in CIFAR_MODELS and (not cifar or self.size not in (None, 32)):
            raise ValueError(
                f"model={self.model!r} takes 32×32 CIFAR images; got dataset={self.dataset!r}, "
                f"size={self.size!r}; allowed: dataset 'cifar10' or 'cifar100' at full size"
            )
        if self.model == "convnet4" and (cifar or self.size not in (None, 28)):
            raise ValueError(
                f"model='convnet4' takes 28×28 MNIST-family images; got dataset={self.dataset!r}, "
                f"size={self.size!r}; allowed: 'mnist' or 'fashion-mnist' at full size"
            )

    @property
    def n_classes(self) -> int:
        return 100 if self.dataset == "cifar100" else 10

    @property
    def iters_per_epoch(self) -> int:
        """⌊N/S⌋: an epoch is one pass over a random permutation, the last partial batch
        dropped."""
        return self.n_train // self.batch_size

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]


@dataclass(frozen=True)
class RandomLabelConfig:
    """App. A.2.2: ``path`` holds the network, the hyperparameters and the clean training set A
    (``path.n_train`` images); ``n_shuffled`` images B carry shuffled labels.  SGD on A ∪ B
    runs until its training loss is below the threshold (a minimum of A ∪ B) or for
    ``pretrain_epochs`` epochs; gradient descent on A alone then has ``descent_steps`` steps to
    reach a minimum of A; SGD on A from there runs ``path.epochs`` epochs and is projected."""

    path: PathConfig
    n_shuffled: int
    pretrain_epochs: int
    descent_steps: int

    def __post_init__(self) -> None:
        positive_int("n_shuffled", self.n_shuffled)
        positive_int("pretrain_epochs", self.pretrain_epochs)
        positive_int("descent_steps", self.descent_steps)
        if self.path.chunk is not None and (self.path.n_train + self.n_shuffled) % self.path.chunk:
            raise ValueError(
                f"chunk={self.path.chunk} must divide n_train + n_shuffled = "
                f"{self.path.n_train + self.n_shuffled}"
            )


# --------------------------------------------------------------------------------------------
# Data and network
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    """Training and validation data with smoothed targets, and the network f(θ, x), on one
    device.  ``chunk`` images per chunk of a full-batch evaluation; ``entropy`` is H(q), the
    floor of the loss."""

    x: Tensor
    y: Tensor
    q: Tensor
    x_val: Tensor
    y_val: Tensor
    q_val: Tensor
    net: FlatNet
    theta_init: Tensor
    chunk: int
    entropy: float

    @property
    def n_samples(self) -> int:
        return self.y.numel()

    @cached_property
    def key(self) -> str:
        """A fingerprint of the data and the initialization (labels, images, θ₀, chunk size),
        computed once: hashing tens of thousands of images takes a second."""
        return checkpoints.fingerprint(
            checkpoints.tensor_hash(self.y), checkpoints.tensor_hash(self.x),
            checkpoints.tensor_hash(self.theta_init), self.chunk,
        )  # fmt: skip

    @property
    def device(self) -> torch.device:
        return self.x.device

    def batch_loss(self, theta: Tensor, idx: Tensor) -> Tensor:
        """The loss of the mini-batch ``idx`` ``(S,)`` at θ (BatchNorm: its own statistics)."""
        return cross_entropy(self.net(theta, self.x[idx]), self.q[idx])

    def _chunks(self, val: bool) -> Iterator[tuple[Tensor, Tensor]]:
        x, q = (self.x_val, self.q_val) if val else (self.x, self.q)
        yield from zip(x.split(self.chunk), q.split(self.chunk), strict=True)

    def loss_and_grad(self, theta: Tensor) -> tuple[float, Tensor]:
        """The full-batch training loss L(θ) (mean over chunks) and its gradient ``(P,)``,
        accumulated chunk by chunk in a fixed order."""
        grad = torch.zeros_like(theta)
        total = 0.0
        n = math.ceil(self.n_samples / self.chunk)
        for xc, qc in self._chunks(False):
            th = theta.detach().requires_grad_(True)
            value = cross_entropy(self.net(th, xc), qc) / n
            (g,) = torch.autograd.grad(value, th)
            grad += g
            total += value.item()
        return total, grad

    def losses(self, thetas: Tensor, *, val: bool = False) -> Tensor:
        """Full-batch losses at each row of ``thetas`` ``(k, P)``: ``(k,)``, one batched
        (``vmap``) forward pass per chunk, on the training or the validation set."""

        def one(theta: Tensor, xc: Tensor, qc: Tensor) -> Tensor:
            return cross_entropy(self.net(theta, xc), qc)

        chunks = list(self._chunks(val))
        with torch.no_grad():
            total = sum(torch.vmap(one, in_dims=(0, None, None))(thetas, xc, qc)
                        for xc, qc in chunks)  # fmt: skip
        return total / len(chunks)

    def excess(self, theta: Tensor, *, val: bool = False) -> float:
        """L(θ) − H(q) on the training (or validation) set."""
        return self.losses(theta.unsqueeze(0), val=val).item() - self.entropy

    def accuracy(self, theta: Tensor) -> float:
        """The share of training images whose largest output is their label."""
        with torch.no_grad():
            hits = sum((self.net(theta, xc).argmax(1) == yc).sum().item()
                       for xc, yc in zip(self.x.split(self.chunk), self.y.split(self.chunk),
                                         strict=True))  # fmt: skip
        return hits / self.n_samples


def _load(cfg: PathConfig, n: int, train: bool, seed: int) -> tuple[Tensor, Tensor]:
    """A class-balanced subset; offline, a missing data set raises :class:`data.DataMissing`
    even when ``download`` is set (torchvision then fails with an ``OSError``)."""
    kw = dict(train=train, size=cfg.size, seed=seed, dtype=cfg.torch_dtype)
    try:
        return data.load(cfg.dataset, n, **kw)
    except data.DataMissing:
        if not cfg.download:
            raise
    try:
        return data.load(cfg.dataset, n, download=True, **kw)
    except OSError as err:
        raise data.DataMissing(
            f"{cfg.dataset} is not under {data.data_root()} and could not be downloaded "
            f"({err}). Run once on a machine with internet access, or copy torchvision's files "
            "there, or set HESSNOISE_DATA to the folder that holds them."
        ) from None


def _images(x: Tensor, channels: int) -> Tensor:
    side = math.isqrt(x.shape[1] // channels)
    return x.reshape(x.shape[0], channels, side, side)


def _standardize(x: Tensor, *others: Tensor) -> tuple[Tensor, ...]:
    """Per-channel standardization with the statistics of the training images ``x``."""
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    std = x.std(dim=(0, 2, 3), keepdim=True)
    return tuple((t - mean) / std for t in (x, *others))


def network(
    cfg: PathConfig, seed: int = 0, device: torch.device | str = "cpu", side: int | None = None
) -> torch.nn.Module:
    """``cfg``'s network, initialized with ``seed``, in its dtype on ``device``; the conv-net
    takes images of side ``side`` (default ``cfg.size``, else the data set's own side)."""
    if cfg.model != "conv-net":
        return models.build(cfg.model, n_classes=cfg.n_classes, seed=seed,
                            dtype=cfg.torch_dtype, device=device)  # fmt: skip
    channels = 3 if cfg.dataset.startswith("cifar") else 1
    side = side or cfg.size or (32 if channels == 3 else 28)
    return models.conv_net(
        channels, cfg.n_classes, side=side, channels=cfg.conv[:2], hidden=cfg.conv[2],
        batch_norm=cfg.batch_norm, seed=seed, dtype=cfg.torch_dtype, device=device,
    )  # fmt: skip


def _problem(
    cfg: PathConfig, x: Tensor, y: Tensor, x_val: Tensor, y_val: Tensor, seed: int, device
) -> Problem:
    channels = 3 if cfg.dataset.startswith("cifar") else 1
    x, x_val = _images(x, channels), _images(x_val, channels)
    x, x_val = _standardize(x, x_val)
    module = network(cfg, seed, device, side=x.shape[-1])
    net = FlatNet(module)
    to = dict(device=device)
    q = smoothed_targets(y.to(**to), cfg.n_classes, cfg.eps).to(cfg.torch_dtype)
    q_val = smoothed_targets(y_val.to(**to), cfg.n_classes, cfg.eps).to(cfg.torch_dtype)
    return Problem(
        x=x.to(**to), y=y.to(**to), q=q, x_val=x_val.to(**to), y_val=y_val.to(**to),
        q_val=q_val, net=net, theta_init=net.theta0(), chunk=cfg.chunk or max(len(y), len(y_val)),
        entropy=target_entropy(cfg.eps, cfg.n_classes),
    )  # fmt: skip


def setup(cfg: PathConfig, seed: int, device: torch.device | str) -> Problem:
    """The class-balanced training and validation subsets drawn with ``seed``, standardized
    with the training images' per-channel statistics, and the network initialized with
    ``seed``, on ``device``."""
    x, y = _load(cfg, cfg.n_train, True, seed)
    x_val, y_val = _load(cfg, cfg.n_val, False, seed)
    return _problem(cfg, x, y, x_val, y_val, seed, device)


def synthetic(
    cfg: PathConfig, seed: int = 0, side: int | None = None, device: torch.device | str = "cpu"
) -> Problem:
    """A :class:`Problem` on random images with labels 0, 1, …, K − 1, 0, … (seeded, in
    ``cfg``'s dtype), shaped like ``cfg``'s data set: ``side×side`` (default ``cfg.size``, else
    the data set's own side) with 3 channels for CIFAR, 1 otherwise.  For tests and timings,
    where real data would only cost time."""
    channels = 3 if cfg.dataset.startswith("cifar") else 1
    side = side or cfg.size or (32 if channels == 3 else 28)
    gen = torch.Generator().manual_seed(123)
    d = channels * side * side
    x = torch.rand(cfg.n_train, d, generator=gen, dtype=torch.float64)
    x_val = torch.rand(cfg.n_val, d, generator=gen, dtype=torch.float64)
    k = cfg.n_classes
    y, y_val = torch.arange(cfg.n_train) % k, torch.arange(cfg.n_val) % k
    dt = cfg.torch_dtype
    return _problem(cfg, x.to(dt), y, x_val.to(dt), y_val, seed, device)


@dataclass(frozen=True)
class RandomLabelData:
    """App. A.2.2's two training sets on one network: ``clean`` is A, ``mixed`` is A ∪ B with
    B's labels shuffled (same initialization, same standardization, same validation set);
    ``changed`` is the share of B whose label the shuffle changed."""

    clean: Problem
    mixed: Problem
    changed: float


def setup_random_labels(
    rcfg: RandomLabelConfig, seed: int, device: torch.device | str
) -> RandomLabelData:
    """Draw |A| + |B| class-balanced images with ``seed``, split them into A (first |A|) and B,
    and permute the labels within B (a seeded permutation)."""
    cfg = rcfg.path
    n_a = cfg.n_train
    x, y = _load(cfg, n_a + rcfg.n_shuffled, True, seed)
    x_val, y_val = _load(cfg, cfg.n_val, False, seed)
    gen = torch.Generator().manual_seed(seed)
    y_b = y[n_a:][torch.randperm(rcfg.n_shuffled, generator=gen)]
    changed = (y_b != y[n_a:]).double().mean().item()
    y_mixed = torch.cat([y[:n_a], y_b])
    mixed = _problem(cfg, x, y_mixed, x_val, y_val, seed, device)
    clean = replace(
        mixed, x=mixed.x[:n_a], y=mixed.y[:n_a], q=mixed.q[:n_a],
        chunk=cfg.chunk or max(n_a, cfg.n_val),
    )  # fmt: skip
    return RandomLabelData(clean, mixed, changed)


def data_key(problem: Problem) -> str:
    """:attr:`Problem.key`: a fingerprint of the data and the initialization."""
    return problem.key
