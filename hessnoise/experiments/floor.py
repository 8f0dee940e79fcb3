r"""The small network of Section 4.1 and the floor of its valley.

Section 4.1 trains a one-hidden-layer MLP on 500 MNIST images with label-smoothed
cross-entropy, first to a minimum and then with SGD from it.  Four chapters work on that
network (negative eigenvalues, the curved floor, SGD noise, the slow flow along the floor);
this module holds what they share:

* :class:`FloorConfig` — data, network and how the floor is reached, per scale;
* :class:`Problem` — data, smoothed targets and the network as f(θ, x), with the loss, the
  exact float64 Hessian and the per-sample gradients as functions of θ;
* :func:`find_floor` — the valley floor θ* by Gauss–Newton (after the paper's gradient
  descent at paper scale), its exact spectrum, and how well it interpolates; cached under a
  fingerprint, so every chapter that needs the floor reads the same one.

Shapes: θ is ``(P,)``; data ``x`` ``(M, d)``, labels ``y`` ``(M,)``, targets ``q``
``(M, K)``.  Everything runs in float64 on the chosen device; spectra come back to the CPU.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor

from hessnoise import checkpoints, data, models, train
from hessnoise._validate import choice, number, positive_int
from hessnoise.curvature import HessianOperator, Spectrum, hessian_matrix, spectrum
from hessnoise.curvature.batches import default_memory_budget
from hessnoise.losses import cross_entropy, smoothed_targets, target_entropy
from hessnoise.params import FlatNet
from hessnoise.progress import timed
from hessnoise.report import Check
from hessnoise.scales import by_scale
from hessnoise.threads import threads

DTYPE = torch.float64
N_CLASSES = 10
PAPER_PARAMS = 6220  # Section 4.1: 14×14 inputs, 30 hidden units, 10 classes
FLOOR_METHODS = ("gauss-newton", "gd+gauss-newton")
DATASETS = ("fashion-mnist", "mnist", "digits")
# Part of every cached floor's fingerprint: bump it when what the cache holds changes.
CHECKPOINT_VERSION = 2


@dataclass(frozen=True)
class FloorConfig:
    """The data, the network and how its floor is reached.

    ``floor_method`` is ``'gauss-newton'`` (from the initialization) or ``'gd+gauss-newton'``
    (the paper's gradient descent, ``gd_lr`` for ``gd_epochs`` epochs, then Gauss–Newton).
    ``fallback`` is the dataset that stands in when ``dataset`` is not on the machine and
    cannot be downloaded (a GPU machine without internet); :attr:`Problem.dataset` says which
    was used.
    """

    dataset: str
    n: int
    size: int | None
    hidden: int
    eps: float = 0.1
    activation: str = "tanh"
    floor_method: str = "gauss-newton"
    gd_lr: float = 0.1
    gd_epochs: int = 10_000
    floor_iter: int = 100
    floor_tol: float = 1e-13
    expected_params: int | None = None
    assert_interpolation: bool = True
    download: bool = False
    fallback: str | None = None

    def __post_init__(self) -> None:
        choice("dataset", self.dataset, DATASETS)
        if self.fallback is not None:
            choice("fallback", self.fallback, DATASETS)
        positive_int("n", self.n)
        positive_int("hidden", self.hidden)
        number("eps", self.eps, lo=0, hi=1, lo_open=True, hi_open=True)
        choice("activation", self.activation, tuple(models.ACTIVATIONS))
        choice("floor_method", self.floor_method, FLOOR_METHODS)

    @classmethod
    def for_scale(cls, scale: str) -> FloorConfig:
        """``smoke``: 20 Fashion-MNIST images at 7×7, 16 hidden units (P = 970).
        ``small``: 50 images at 7×7, 24 hidden units (P = 1,450, N(K−1) = 450).
        ``paper``: Section 4.1, 500 MNIST images at 14×14, 30 hidden units (P = 6,220),
        gradient descent at lr 0.1 for 10k epochs, then Gauss–Newton; Fashion-MNIST at 14×14
        stands in where MNIST is missing and cannot be downloaded."""
        return by_scale(
            scale,
            smoke=cls(dataset="fashion-mnist", n=20, size=7, hidden=16),
            small=cls(dataset="fashion-mnist", n=50, size=7, hidden=24),
            paper=cls(
                dataset="mnist", n=500, size=14, hidden=30, floor_method="gd+gauss-newton",
                floor_iter=300, expected_params=PAPER_PARAMS, assert_interpolation=False,
                download=True, fallback="fashion-mnist",
            ),
        )  # fmt: skip

    @property
    def method(self) -> str:
        """How the floor is reached, in words."""
        if self.floor_method == "gauss-newton":
            return "Gauss–Newton (Levenberg–Marquardt) from the initialization"
        return (
            f"the paper's gradient descent (lr {self.gd_lr:g}, {self.gd_epochs:,} epochs), "
            "then Gauss–Newton"
        )

    @property
    def n_constraints(self) -> int:
        """N(K − 1): the softmax outputs' degrees of freedom that interpolation must fix."""
        return self.n * (N_CLASSES - 1)


def required_data(scale: str) -> dict[str, bool]:
    """The datasets this experiment reads at ``scale``, each with whether it may be downloaded.
    The book command finds this function in every module a chapter imports and makes sure the
    data is there before any chapter runs (:func:`hessnoise.data.ensure`)."""
    cfg = FloorConfig.for_scale(scale)
    if cfg.fallback and not data.available(cfg.dataset) and (data.offline() or not cfg.download):
        return {cfg.fallback: False}  # what :func:`setup` will read instead
    return {cfg.dataset: cfg.download}


@dataclass(frozen=True)
class Problem:
    """Data, smoothed targets and the network f(θ, x) on one device; ``theta_init`` ``(P,)``
    is the initialization; ``dataset`` the images actually used (the config's, or its
    fallback)."""

    x: Tensor
    y: Tensor
    q: Tensor
    net: FlatNet
    theta_init: Tensor
    dataset: str = ""

    @property
    def n_params(self) -> int:
        return self.theta_init.numel()

    @property
    def n_samples(self) -> int:
        return self.y.numel()

    @property
    def device(self) -> torch.device:
        return self.x.device

    def outputs(self, theta: Tensor) -> Tensor:
        """The logits ``(M, K)`` at θ."""
        return self.net(theta, self.x)

    def loss(self, theta: Tensor) -> Tensor:
        """The full-batch loss L(θ), H(q) included as in PyTorch (a 0-d tensor)."""
        return cross_entropy(self.net(theta, self.x), self.q)

    def loss_value(self, theta: Tensor) -> float:
        """L(θ) as a float."""
        with torch.no_grad():
            return self.loss(theta).item()

    def hessian(self, theta: Tensor) -> Tensor:
        """The dense float64 Hessian ``(P, P)`` of the full-batch loss at θ, on the device."""
        op = HessianOperator(self.net.module, cross_entropy, (self.x, self.q), at=theta)
        with threads("dense"):
            return hessian_matrix(op)

    def spectrum(self, theta: Tensor) -> Spectrum:
        """The exact spectrum of the full-batch Hessian at θ."""
        h = self.hessian(theta)
        with threads("dense"):
            return spectrum(h)

    def spectra(self, thetas: Tensor) -> list[Spectrum]:
        """The exact spectra at each row of ``thetas`` ``(k, P)``: the Hessians one at a time,
        their eigensolves batched (as many at once as fit in a quarter of the memory budget)."""
        per_matrix = self.n_params**2 * torch.finfo(DTYPE).bits // 8
        step = max(1, default_memory_budget(self.device) // (4 * per_matrix))
        out = []
        for s in range(0, thetas.shape[0], step):
            h = torch.stack([self.hessian(theta) for theta in thetas[s : s + step]])
            with threads("dense"):
                lam = torch.linalg.eigvalsh(h).to(device="cpu", dtype=torch.float64)
            out += [Spectrum(row.clone()) for row in lam]
        return out

    def sample_gradients(self, theta: Tensor, targets: Tensor | None = None) -> Tensor:
        """Per-sample gradients ∇_θ ℓ(f(x_k; θ), t_k), ``(M, P)``; targets default to q."""
        targets = self.q if targets is None else targets

        def one(th: Tensor, xk: Tensor, tk: Tensor) -> Tensor:
            return cross_entropy(self.net(th, xk.unsqueeze(0)), tk.unsqueeze(0))

        return torch.vmap(torch.func.grad(one), in_dims=(None, 0, 0))(theta, self.x, targets)

    def class_gradients(self, theta: Tensor) -> Tensor:
        """∇_θ(−log p_c(x_k; θ)) for every sample k and class c, ``(M, K, P)``: the gradients
        of every label a sample can carry (a sample's gradient with targets t is Σ_c t_c
        times these)."""

        def nll(th: Tensor, xk: Tensor) -> Tensor:
            return -self.net(th, xk.unsqueeze(0)).log_softmax(-1)[0]

        return torch.vmap(torch.func.jacrev(nll), in_dims=(None, 0))(theta, self.x)


def setup(cfg: FloorConfig, seed: int, device: torch.device | str) -> Problem:
    """Load the class-balanced subset (drawn with ``seed``) and build the network on ``device``;
    the config's ``fallback`` dataset stands in if its own is missing."""
    name = cfg.dataset
    try:
        x, y = data.load(name, cfg.n, size=cfg.size, seed=seed, download=cfg.download)
    except data.DataMissing:
        if cfg.fallback is None:
            raise
        name = cfg.fallback
        x, y = data.load(name, cfg.n, size=cfg.size, seed=seed)
    x, y = x.to(device=device, dtype=DTYPE), y.to(device)
    module = models.mlp(
        x.shape[1], [cfg.hidden], N_CLASSES, activation=cfg.activation, seed=seed, device=device
    )
    net = FlatNet(module)
    return Problem(x, y, smoothed_targets(y, N_CLASSES, cfg.eps), net, net.theta0(), name)


@dataclass
class Floor:
    """The valley floor θ* and where the paper's protocol starts.

    ``theta_start`` is θ* itself, or the paper's gradient-descent point at paper scale.
    ``eigenvalues`` is the floor's full spectrum ``(P,)`` on the CPU and ``basis`` ``(P, n)``
    the eigenvectors of its n non-degenerate eigenvalues, on the device; ``max_sample_grad``
    is max_k ‖∇ℓ_k(θ*)‖, which vanishes where the network interpolates q.
    """

    theta: Tensor
    theta_start: Tensor
    loss: float
    start_loss: float
    grad_norm: float
    max_sample_grad: float
    iterations: int
    eigenvalues: Tensor
    basis: Tensor
    zero_tol: float
    seconds: float

    @property
    def trace(self) -> float:
        return self.eigenvalues.sum().item()

    @property
    def rank(self) -> int:
        """Eigenvalues above the numerical zero: the non-degenerate dimension n."""
        return int((self.eigenvalues > self.zero_tol).sum())

    @property
    def gap(self) -> float:
        """The smallest non-degenerate eigenvalue."""
        return self.eigenvalues[self.eigenvalues > self.zero_tol].min().item()


def max_sample_gradient(problem: Problem, theta: Tensor) -> float:
    """max_k ‖∇_θ ℓ(f(x_k; θ), q_k)‖ over the training samples."""
    return problem.sample_gradients(theta).norm(dim=1).max().item()


def floor_fingerprint(problem: Problem, cfg: FloorConfig, seed: int) -> str:
    """What the floor depends on: the configuration, the seed, the initialization, and the
    dataset when a fallback stood in for the config's."""
    stand_in = [problem.dataset] if problem.dataset not in ("", cfg.dataset) else []
    return checkpoints.fingerprint(
        CHECKPOINT_VERSION, asdict(cfg), seed, checkpoints.tensor_hash(problem.theta_init),
        *stand_in,
    )  # fmt: skip


def find_floor(
    problem: Problem, cfg: FloorConfig, seed: int, checkpoint_dir: str | Path | None = None
) -> Floor:
    """Reach the valley floor (see :class:`Floor`); cached in ``checkpoint_dir/floor.pt``."""
    t0 = time.perf_counter()
    path = Path(checkpoint_dir) / "floor.pt" if checkpoint_dir is not None else None
    key = floor_fingerprint(problem, cfg, seed)
    state = checkpoints.load_matching(path, key)
    if state is None:
        start = problem.theta_init
        if cfg.floor_method == "gd+gauss-newton":
            with timed(f"floor, seed {seed}: gradient descent, {cfg.gd_epochs:,} epochs"):
                start = train.gradient_descent(
                    problem.loss, start, lr=cfg.gd_lr, steps=cfg.gd_epochs
                ).theta
        with timed(f"floor, seed {seed}: Gauss-Newton"):
            fit = train.gauss_newton(
                problem.outputs, cross_entropy, problem.q, start,
                max_iter=cfg.floor_iter, grad_tol=cfg.floor_tol,
            )  # fmt: skip
        if cfg.floor_method == "gauss-newton":  # the paper's protocol starts on the floor
            start = fit.theta
        state = {
            "fingerprint": key,
            "theta": fit.theta.cpu(),
            "theta_start": start.cpu(),
            "grad_norm": fit.grad_norm,
            "iterations": fit.iterations,
        }
        if path is not None:
            checkpoints.save_checkpoint(path, state)
    theta = state["theta"].to(problem.device, DTYPE)
    start = state["theta_start"].to(problem.device, DTYPE)
    with timed(f"floor, seed {seed}: Hessian and spectrum, P = {problem.n_params:,}"):
        h = problem.hessian(theta)
        with threads("dense"):
            lam, vec = torch.linalg.eigh(h)
    sp = Spectrum(lam.to(device="cpu", dtype=torch.float64))
    return Floor(
        theta=theta,
        theta_start=start,
        loss=problem.loss_value(theta),
        start_loss=problem.loss_value(start),
        grad_norm=state["grad_norm"],
        max_sample_grad=max_sample_gradient(problem, theta),
        iterations=state["iterations"],
        eigenvalues=sp.eigenvalues,
        basis=vec[:, lam > sp.zero_tol],
        zero_tol=sp.zero_tol,
        seconds=time.perf_counter() - t0,
    )


def floor_facts(problem: Problem, floor: Floor, cfg: FloorConfig) -> dict[str, float | int | str]:
    """The numbers a chapter states about its network and floor, for ``Chapter.record``."""
    h_q = target_entropy(cfg.eps, N_CLASSES)
    return {
        "dataset": problem.dataset or cfg.dataset,
        "dataset_requested": cfg.dataset,
        "dataset_stands_in": int(problem.dataset not in ("", cfg.dataset)),
        "n_samples": cfg.n,
        "image_side": cfg.size or 0,
        "hidden": cfg.hidden,
        "n_params": problem.n_params,
        "n_constraints": cfg.n_constraints,
        "param_ratio": problem.n_params / cfg.n_constraints,
        "eps": cfg.eps,
        "n_classes": N_CLASSES,
        "target_entropy": h_q,
        "floor_loss": floor.loss,
        "floor_minus_entropy": floor.loss - h_q,
        "floor_iterations": floor.iterations,
        "floor_sample_grad": floor.max_sample_grad,
        "floor_rank": floor.rank,
        "floor_null_dim": problem.n_params - floor.rank,
        "floor_zero_tol": floor.zero_tol,
        "floor_gap": floor.gap,
        "floor_lam_max": floor.eigenvalues.max().item(),
        "floor_trace": floor.trace,
        "start_excess": floor.start_loss - floor.loss,
    }


def floor_checks(problem: Problem, floors: list[Floor], cfg: FloorConfig) -> list[Check]:
    """Sanity checks of a set of floors (one per seed) of the same network: the network has
    more parameters than interpolation constraints (and the paper's count at paper scale),
    every floor is stationary, and, where the scale asserts it, every floor interpolates the
    smoothed targets with the rank N(K − 1) of an interpolating floor."""
    p, n_c = problem.n_params, cfg.n_constraints
    h_q = target_entropy(cfg.eps, N_CLASSES)
    checks = [
        Check("overparameterized", p / n_c, "> 1 (P > N(K − 1))", p > n_c, "consistency"),
        Check("floor_grad_norm", max(f.grad_norm for f in floors), "< 1e-08",
              max(f.grad_norm for f in floors) < 1e-8, "consistency"),
    ]  # fmt: skip
    if cfg.expected_params is not None:
        ok = p == cfg.expected_params
        checks.append(Check("paper_param_count", p, f"= {cfg.expected_params}", ok, "consistency"))
    if cfg.assert_interpolation:
        gap = max(abs(f.loss - h_q) for f in floors)
        ranks = all(f.rank == n_c for f in floors)
        checks += [
            Check("floor_interpolation_gap", gap, "< 1e-10", gap < 1e-10, "consistency"),
            Check("floor_rank_matches", ranks, "rank = N(K − 1) at every floor", ranks,
                  "consistency"),
        ]  # fmt: skip
    return checks


def interpolates(floors: list[Floor], cfg: FloorConfig) -> bool:
    """Whether every floor interpolates q to 1e-10 with the rank N(K − 1)."""
    h_q = target_entropy(cfg.eps, N_CLASSES)
    return all(abs(f.loss - h_q) < 1e-10 and f.rank == cfg.n_constraints for f in floors)
