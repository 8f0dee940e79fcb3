r"""Chapter "Negative eigenvalues and the training loss": Section 4.1, Appendix A.3, Fig. 2(a).

Appendix A.3 predicts that, in the stationary state of SGD near a minimal valley, the excess
loss and the curvature along the valley floor are both proportional to
𝒞 = ηκ/4 (κ = (1/S)(1 − S/M) for SGD), so that the sum of the small negative Hessian
eigenvalues is proportional to the excess loss ⟨L⟩ − L*.  This module runs the whole test:

* :func:`setup`: a one-hidden-layer tanh MLP on a class-balanced image subset, with
  label-smoothed targets q (ε = 0.1) and the loss −Σ_c q_c log p_c (PyTorch's
  ``CrossEntropyLoss(label_smoothing=ε)``, which includes the target entropy H(q)).
* :func:`find_floor`: the valley floor θ* by Gauss–Newton (Levenberg–Marquardt), after the
  paper's gradient descent (lr 0.1, 10k epochs) at paper scale; L*, the floor's exact
  spectrum, and the per-sample gradients there.
* :func:`run_sgd` / :func:`sweep`: SGD from the floor for an η sweep at fixed S and an S sweep
  at fixed η that share their centre, each run with an equilibration window and exact float64
  spectra at evenly spaced snapshots; each run is checkpointed, so a killed sweep resumes.
  Two noises: the paper's mini-batches of fixed smoothed targets (``'minibatch'``), and
  mini-batches whose labels are drawn from q (``'sampled-labels'``), an unbiased gradient of
  the same loss whose noise at an interpolating floor is exactly H/S.
* :func:`analyse`: the paper's line y = wx + b of Σλ₋ against ⟨L⟩ − L*, the two-term law
  y = a√x + bx that a curved floor predicts, the log–log exponent, all with bootstrap
  confidence intervals, and the collapse test (η-sweep slope against S-sweep slope);
  :func:`excess_vs_theory` and :func:`excess_error_budget` test A.3's ⟨L⟩ − L* = 𝒞·Σλ_i, and
  :func:`project_to_floor` measures how far each run has drifted along the valley.
* :func:`curvature_probe`: the first-order (√𝒞) term that a curved valley floor adds to the
  instantaneous Hessian, measured at the floor and compared with exact spectra
  (:func:`probe_deviation` compares it with the SGD runs).

On CUDA everything (data, model, generator, Hessians, eigensolves, Gauss–Newton) stays on the
device; the host sees a scalar per loss evaluation and the eigenvalues of each snapshot.

Shapes: θ is ``(P,)``; data ``x`` ``(M, d)``, labels ``y`` ``(M,)``, targets ``q`` ``(M, K)``.
Everything runs in float64 on the chosen device; spectra come back to the CPU.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats
from torch import Tensor, nn

from hessnoise import data, models, train
from hessnoise._validate import choice, number, numbers, positive_int
from hessnoise.curvature import HessianOperator, hessian_matrix, spectrum
from hessnoise.scales import by_scale

DTYPE = torch.float64
N_CLASSES = 10
PROTOCOLS = ("minibatch", "sampled-labels")
FLOOR_METHODS = ("gauss-newton", "gd+gauss-newton")
DATASETS = ("fashion-mnist", "mnist", "digits")
# Σλ₋ is recorded at these multiples of Spectrum.zero_tol, to show how much the threshold matters.
TOL_FACTORS = (1.0, 1e3, 1e6)
PAPER_SLOPE = -40.07  # Fig. 2(a): y = wx + b with w = −40.07, b = −1.22e−5
PAPER_INTERCEPT = -1.22e-5
PAPER_PARAMS = 6220  # Section 4.1: 14×14 inputs, 30 hidden units, 10 classes
# Part of every checkpoint's fingerprint: bump it when what a checkpoint holds changes.
CHECKPOINT_VERSION = 1


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NegativeEigenvaluesConfig:
    """Sizes of the chapter's experiment.

    The η sweep runs ``etas`` at batch size ``batch_size0``; the S sweep runs ``batch_sizes``
    at ``eta0``; their shared centre is (``eta0``, ``batch_size0``).  Windows are in SGD time
    τ = η·t, the same for every run, so that runs differ only in the noise scale 𝒞 = ηκ/4 and
    not in how far the slow directions have relaxed.  The measurement window is cut into
    ``snapshots`` blocks, each ending with an exact spectrum, and the loss is evaluated
    ``loss_points`` times per block.  ``minibatch_*`` are the windows of the paper's protocol.
    """

    dataset: str
    n: int
    size: int | None
    hidden: int
    etas: tuple[float, ...]
    batch_sizes: tuple[int, ...]
    eta0: float
    batch_size0: int
    tau_equil: float
    tau_measure: float
    snapshots: int
    minibatch_tau: tuple[float, float]
    minibatch_snapshots: int
    loss_points: int = 10
    eps: float = 0.1
    activation: str = "tanh"
    floor_method: str = "gauss-newton"
    gd_lr: float = 0.1
    gd_epochs: int = 10_000
    floor_iter: int = 100
    floor_tol: float = 1e-13
    probe_cs: tuple[float, ...] = (1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2)
    bootstrap: int = 2000
    resolution_bound: float = 0.5
    expected_params: int | None = None
    assert_interpolation: bool = True
    download: bool = False
    checkpoint_every: int = 5000

    def __post_init__(self) -> None:
        choice("dataset", self.dataset, DATASETS)
        positive_int("n", self.n)
        if self.size is not None:
            positive_int("size", self.size)
        positive_int("hidden", self.hidden)
        numbers("etas", self.etas, lo=0, lo_open=True)
        numbers("batch_sizes", self.batch_sizes, lo=1, hi=self.n, integer=True)
        for name, values in (("etas", self.etas), ("batch_sizes", self.batch_sizes)):
            if len(values) < 3 or len(set(values)) != len(values):
                raise ValueError(
                    f"{name}={values!r} must hold at least 3 distinct values (a slope with a "
                    "confidence interval needs them)"
                )
        choice("eta0", self.eta0, self.etas)
        choice("batch_size0", self.batch_size0, self.batch_sizes)
        number("tau_equil", self.tau_equil, lo=0, lo_open=True)
        number("tau_measure", self.tau_measure, lo=0, lo_open=True)
        number("snapshots", self.snapshots, lo=3, integer=True)
        numbers("minibatch_tau", self.minibatch_tau, lo=0, lo_open=True)
        if len(self.minibatch_tau) != 2:
            raise ValueError(
                f"minibatch_tau={self.minibatch_tau!r} must be a pair (τ_equil, τ_measure)"
            )
        number("minibatch_snapshots", self.minibatch_snapshots, lo=1, integer=True)
        positive_int("loss_points", self.loss_points)
        number("eps", self.eps, lo=0, hi=1, lo_open=True, hi_open=True)
        choice("activation", self.activation, tuple(models.ACTIVATIONS))
        choice("floor_method", self.floor_method, FLOOR_METHODS)
        number("gd_lr", self.gd_lr, lo=0, lo_open=True)
        positive_int("gd_epochs", self.gd_epochs)
        positive_int("floor_iter", self.floor_iter)
        number("floor_tol", self.floor_tol, lo=0, lo_open=True)
        numbers("probe_cs", self.probe_cs, lo=0, lo_open=True)
        if list(self.probe_cs) != sorted(set(self.probe_cs)):
            raise ValueError(f"probe_cs={self.probe_cs!r} must be strictly increasing")
        number("bootstrap", self.bootstrap, lo=100, integer=True)
        number("resolution_bound", self.resolution_bound, lo=0, lo_open=True)
        if self.expected_params is not None:
            positive_int("expected_params", self.expected_params)
        positive_int("checkpoint_every", self.checkpoint_every)

    @classmethod
    def for_scale(cls, scale: str) -> NegativeEigenvaluesConfig:
        """``smoke``: 20 Fashion-MNIST images at 7×7, 16 hidden units (P = 970, N(K−1) = 180).
        ``small``: 50 images at 7×7, 24 hidden units (P = 1,450, N(K−1) = 450).
        ``paper``: Section 4.1, 500 MNIST images at 14×14, 30 hidden units (P = 6,220), GD at
        lr 0.1 for 10k epochs, then η from 0.002 to 0.1 and S from 5 to 250."""
        return by_scale(
            scale,
            smoke=cls(
                dataset="fashion-mnist", n=20, size=7, hidden=16,
                etas=(0.025, 0.05, 0.1), batch_sizes=(5, 10, 20), eta0=0.05, batch_size0=10,
                tau_equil=40, tau_measure=48, snapshots=12,
                minibatch_tau=(5, 5), minibatch_snapshots=1,
                probe_cs=(1e-8, 1e-6, 1e-4, 1e-2), bootstrap=500, resolution_bound=2.0,
            ),
            small=cls(
                dataset="fashion-mnist", n=50, size=7, hidden=24,
                etas=(0.01, 0.05, 0.1), batch_sizes=(5, 10, 50), eta0=0.05,
                batch_size0=10, tau_equil=100, tau_measure=160, snapshots=80,
                minibatch_tau=(10, 10), minibatch_snapshots=1,
            ),
            paper=cls(
                dataset="mnist", n=500, size=14, hidden=30,
                etas=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1),
                batch_sizes=(5, 10, 20, 50, 100, 250), eta0=0.01, batch_size0=50,
                tau_equil=100, tau_measure=100, snapshots=40,
                minibatch_tau=(100, 100), minibatch_snapshots=20,
                floor_method="gd+gauss-newton", floor_iter=300, expected_params=PAPER_PARAMS,
                assert_interpolation=False, download=True,
            ),
        )  # fmt: skip

    @property
    def n_constraints(self) -> int:
        """N(K − 1): the softmax outputs' degrees of freedom that interpolation must fix."""
        return self.n * (N_CLASSES - 1)

    def kappa(self, protocol: str, batch_size: int) -> float:
        """κ of the noise at the floor: (1/S)(1 − S/M) for mini-batches (Hoffer et al., the
        paper's eq. 10), 1/S for sampled labels (exact at an interpolating floor)."""
        choice("protocol", protocol, PROTOCOLS)
        if protocol == "minibatch":
            return (1 - batch_size / self.n) / batch_size
        return 1 / batch_size

    def c_a3(self, protocol: str, eta: float, batch_size: int) -> float:
        """Appendix A.3's 𝒞 = ηκ/4."""
        return eta * self.kappa(protocol, batch_size) / 4


# --------------------------------------------------------------------------------------------
# The loss and its target entropy
# --------------------------------------------------------------------------------------------
def smoothed_targets(y: Tensor, n_classes: int, eps: float) -> Tensor:
    """Label-smoothed targets q = (1 − ε)·onehot(y) + ε/K, ``(M, K)`` float64."""
    positive_int("n_classes", n_classes)
    number("eps", eps, lo=0, hi=1, hi_open=True)
    q = torch.full((y.numel(), n_classes), eps / n_classes, dtype=DTYPE, device=y.device)
    q[torch.arange(y.numel(), device=y.device), y] += 1 - eps
    return q


def target_entropy(eps: float, n_classes: int = N_CLASSES) -> float:
    """H(q) = −(1 − ε + ε/K) log(1 − ε + ε/K) − (K − 1)(ε/K) log(ε/K): the floor of
    ``CrossEntropyLoss(label_smoothing=ε)`` where the network interpolates q."""
    number("eps", eps, lo=0, hi=1, hi_open=True)
    positive_int("n_classes", n_classes)
    top, rest = 1 - eps + eps / n_classes, eps / n_classes
    return -top * math.log(top) - (0.0 if rest == 0 else (n_classes - 1) * rest * math.log(rest))


def cross_entropy(out: Tensor, target: Tensor) -> Tensor:
    """Mean of −Σ_c t_c log softmax(out)_c; ``target`` holds class indices ``(B,)`` or
    probabilities ``(B, K)``.  With t = q this equals PyTorch's label-smoothed loss."""
    logp = out.log_softmax(-1)
    if target.is_floating_point():
        return -(target * logp).sum(-1).mean()
    return -logp.gather(-1, target.unsqueeze(-1)).mean()


# --------------------------------------------------------------------------------------------
# Problem and floor
# --------------------------------------------------------------------------------------------
@dataclass
class Problem:
    """Data, targets and model on one device; ``theta_init`` is the initialization ``(P,)``."""

    x: Tensor
    y: Tensor
    q: Tensor
    model: nn.Module
    theta_init: Tensor

    @property
    def n_params(self) -> int:
        return self.theta_init.numel()

    @property
    def n_samples(self) -> int:
        return self.y.numel()

    @property
    def device(self) -> torch.device:
        return self.x.device

    def loss(self, theta: Tensor) -> float:
        """Full-batch loss L(θ) (H(q) included, as in PyTorch)."""
        with torch.no_grad():
            return train.loss_function(self.model, cross_entropy)(theta, self.x, self.q).item()

    def spectrum(self, theta: Tensor):
        """The exact float64 spectrum of the full-batch Hessian at θ (dense, on the device)."""
        return spectrum(self.hessian(theta))

    def hessian(self, theta: Tensor) -> Tensor:
        """The dense float64 Hessian ``(P, P)`` at θ, on the device."""
        train.load_flat(self.model, theta)
        return hessian_matrix(HessianOperator(self.model, cross_entropy, (self.x, self.q)))


def setup(cfg: NegativeEigenvaluesConfig, seed: int, device: torch.device | str) -> Problem:
    """Load the class-balanced subset (drawn with ``seed``) and build the model on ``device``."""
    x, y = data.load(cfg.dataset, cfg.n, size=cfg.size, seed=seed, download=cfg.download)
    x, y = x.to(device=device, dtype=DTYPE), y.to(device)
    net = models.mlp(
        x.shape[1], [cfg.hidden], N_CLASSES, activation=cfg.activation, seed=seed, device=device
    )
    return Problem(x, y, smoothed_targets(y, N_CLASSES, cfg.eps), net, train.flat_params(net))


@dataclass
class Floor:
    """The valley floor θ* and where the paper's protocol starts.

    ``theta_start`` is θ* itself, or the paper's gradient-descent point at paper scale.
    ``eigenvalues`` is the floor's full spectrum ``(P,)`` on the CPU; ``max_sample_grad`` is
    max_k ‖∇ℓ_k(θ*)‖, which vanishes where the network interpolates q.
    """

    theta: Tensor
    theta_start: Tensor
    loss: float
    start_loss: float
    grad_norm: float
    max_sample_grad: float
    iterations: int
    eigenvalues: Tensor
    zero_tol: float
    seconds: float

    @property
    def trace(self) -> float:
        return self.eigenvalues.sum().item()

    @property
    def rank(self) -> int:
        """Eigenvalues above the numerical zero: the non-degenerate dimension n."""
        return int((self.eigenvalues > self.zero_tol).sum())


def _fingerprint(*parts: Any) -> str:
    """A hash of everything a cached result depends on (with the checkpoint format)."""
    payload = (CHECKPOINT_VERSION, TOL_FACTORS, *parts)
    return hashlib.sha1(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _tensor_hash(t: Tensor) -> str:
    return hashlib.sha1(t.detach().cpu().numpy().tobytes()).hexdigest()


def max_sample_gradient(problem: Problem, theta: Tensor) -> float:
    """max_k ‖∇_θ ℓ(f(x_k; θ), q_k)‖ over the training samples."""
    f = train.loss_function(problem.model, cross_entropy)

    def one(th: Tensor, xk: Tensor, qk: Tensor) -> Tensor:
        return f(th, xk.unsqueeze(0), qk.unsqueeze(0))

    grads = torch.vmap(torch.func.grad(one), in_dims=(None, 0, 0))(theta, problem.x, problem.q)
    return grads.norm(dim=1).max().item()


def find_floor(
    problem: Problem,
    cfg: NegativeEigenvaluesConfig,
    seed: int,
    checkpoint_dir: str | Path | None = None,
) -> Floor:
    """Reach the valley floor (see :class:`Floor`); cached in ``checkpoint_dir/floor.pt``."""
    t0 = time.perf_counter()
    path = Path(checkpoint_dir) / "floor.pt" if checkpoint_dir is not None else None
    key = _fingerprint(asdict(cfg), seed, _tensor_hash(problem.theta_init))
    state = train.load_checkpoint(path) if path is not None else None
    if state is None or state.get("fingerprint") != key:
        train.load_flat(problem.model, problem.theta_init)
        if cfg.floor_method == "gd+gauss-newton":
            train.gradient_descent(
                problem.model, cross_entropy, problem.x, problem.q,
                lr=cfg.gd_lr, epochs=cfg.gd_epochs,
            )  # fmt: skip
        start = train.flat_params(problem.model).clone()
        fit = train.gauss_newton(
            problem.model, cross_entropy, problem.x, problem.q,
            max_iter=cfg.floor_iter, grad_tol=cfg.floor_tol,
        )  # fmt: skip
        theta = train.flat_params(problem.model)
        if cfg.floor_method == "gauss-newton":  # the paper's protocol starts on the floor
            start = theta
        state = {
            "fingerprint": key,
            "theta": theta.cpu(),
            "theta_start": start.cpu(),
            "grad_norm": fit.grad_norm,
            "iterations": fit.iterations,
        }
        if path is not None:
            train.save_checkpoint(path, state)
    theta = state["theta"].to(problem.device, DTYPE)
    start = state["theta_start"].to(problem.device, DTYPE)
    sp = problem.spectrum(theta)
    return Floor(
        theta=theta,
        theta_start=start,
        loss=problem.loss(theta),
        start_loss=problem.loss(start),
        grad_norm=state["grad_norm"],
        max_sample_grad=max_sample_gradient(problem, theta),
        iterations=state["iterations"],
        eigenvalues=sp.eigenvalues,
        zero_tol=sp.zero_tol,
        seconds=time.perf_counter() - t0,
    )


# --------------------------------------------------------------------------------------------
# SGD runs
# --------------------------------------------------------------------------------------------
def draw_minibatch(problem: Problem, batch_size: int, protocol: str):
    """``draw(generator) → (x_B, t_B)``: S distinct samples; targets q (``'minibatch'``) or
    labels drawn from q (``'sampled-labels'``)."""
    choice("protocol", protocol, PROTOCOLS)
    number("batch_size", batch_size, lo=1, hi=problem.n_samples, integer=True)
    m, dev = problem.n_samples, problem.device

    def draw(gen: torch.Generator) -> tuple[Tensor, Tensor]:
        idx = torch.randperm(m, generator=gen, device=dev)[:batch_size]
        if protocol == "minibatch":
            return problem.x[idx], problem.q[idx]
        labels = torch.multinomial(problem.q[idx], 1, generator=gen).squeeze(1)
        return problem.x[idx], labels

    return draw


def snapshot(problem: Problem, theta: Tensor) -> dict[str, Any]:
    """Exact spectrum at θ: Σλ₋ at each of :data:`TOL_FACTORS` × zero_tol, the count of
    negative eigenvalues, the trace, the smallest eigenvalue, and all eigenvalues (CPU)."""
    sp = problem.spectrum(theta)
    return {
        "sum_neg": [sp.sum_negative(f * sp.zero_tol) for f in TOL_FACTORS],
        "n_neg": sp.n_negative(),
        "trace": sp.trace,
        "lam_min": sp.eigenvalues[0].item(),
        "eigenvalues": sp.eigenvalues,
    }


@dataclass
class RunResult:
    """One SGD run: per measurement block, the time-averaged excess loss and the spectrum at
    the block's end.  ``sum_neg`` is ``(snapshots, len(TOL_FACTORS))``; the rest
    ``(snapshots,)``; ``C`` is Appendix A.3's 𝒞 = ηκ/4.  ``end_floor_trace`` is the trace of
    the Hessian at the floor point below the run's final state (:func:`project_to_floor`):
    how far SGD has moved along the valley."""

    protocol: str
    eta: float
    batch_size: int
    kappa: float
    C: float
    steps: int
    block_excess: Tensor
    sum_neg: Tensor
    n_neg: Tensor
    trace: Tensor
    lam_min: Tensor
    last_eigenvalues: Tensor
    end_floor_trace: float = float("nan")
    resumed_from: int = 0

    @property
    def excess(self) -> float:
        """⟨L⟩ − L* over the measurement window."""
        return self.block_excess.mean().item()

    @property
    def excess_se(self) -> float:
        """Standard error of ⟨L⟩ − L* from the block means."""
        return (self.block_excess.std() / math.sqrt(self.block_excess.numel())).item()

    @property
    def excess_a3(self) -> float:
        """A.3's ⟨L⟩ − L* = 𝒞·Σλ_i with the trace of the Hessians at the snapshots (where in
        the valley the run is, which SGD's drift moves during the window)."""
        return self.C * self.trace.mean().item()

    @property
    def sum_negative(self) -> float:
        """⟨Σλ₋⟩ over the snapshots (threshold: zero_tol)."""
        return self.sum_neg[:, 0].mean().item()

    @property
    def sum_negative_se(self) -> float:
        """Standard error of ⟨Σλ₋⟩, treating snapshots as independent."""
        y = self.sum_neg[:, 0]
        return (y.std() / math.sqrt(y.numel())).item()


def project_to_floor(
    problem: Problem, theta: Tensor, cfg: NegativeEigenvaluesConfig
) -> tuple[Tensor, float]:
    """The floor point below θ, by Gauss–Newton from θ (the nearest minimum to first order:
    the steps are orthogonal to the floor's null space), and the trace of its Hessian."""
    train.load_flat(problem.model, theta)
    train.gauss_newton(
        problem.model, cross_entropy, problem.x, problem.q,
        max_iter=cfg.floor_iter, grad_tol=cfg.floor_tol,
    )  # fmt: skip
    floor_theta = train.flat_params(problem.model)
    return floor_theta, torch.trace(problem.hessian(floor_theta)).item()


def schedule(tau_equil: float, tau_measure: float, eta: float, snapshots: int, loss_points: int):
    """Steps of the equilibration window, of one block, and between loss evaluations, for
    windows given in SGD time τ = η·t; all rounded so that blocks hold whole loss intervals."""
    block = math.ceil(tau_measure / (eta * snapshots))
    every = max(1, block // loss_points)
    block = math.ceil(block / every) * every
    equil = math.ceil(math.ceil(tau_equil / eta) / every) * every
    return equil, block, every


def run_sgd(
    problem: Problem,
    floor: Floor,
    cfg: NegativeEigenvaluesConfig,
    protocol: str,
    eta: float,
    batch_size: int,
    seed: int,
    *,
    tau: tuple[float, float] | None = None,
    snapshots: int | None = None,
    checkpoint_dir: str | Path | None = None,
) -> RunResult:
    """SGD at (η, S) from the floor (θ* for sampled labels, ``floor.theta_start`` for the
    paper's protocol): equilibrate for τ_equil, then measure for τ_measure in ``snapshots``
    blocks.  Checkpointed in ``checkpoint_dir`` (resumes after a kill)."""
    choice("protocol", protocol, PROTOCOLS)
    number("eta", eta, lo=0, lo_open=True)
    number("batch_size", batch_size, lo=1, hi=problem.n_samples, integer=True)
    tau_equil, tau_measure = tau or (cfg.tau_equil, cfg.tau_measure)
    snapshots = snapshots or cfg.snapshots
    equil, block, every = schedule(tau_equil, tau_measure, eta, snapshots, cfg.loss_points)
    steps = equil + snapshots * block
    start = floor.theta if protocol == "sampled-labels" else floor.theta_start
    run_seed = zlib.crc32(f"{seed}/{protocol}/{eta!r}/{batch_size}".encode())
    f_full = train.loss_function(problem.model, cross_entropy)

    def callback(step: int, theta: Tensor) -> dict[str, Any] | None:
        if step <= equil:
            return None
        with torch.no_grad():
            rec: dict[str, Any] = {"excess": f_full(theta, problem.x, problem.q).item()}
        rec["excess"] -= floor.loss
        if (step - equil) % block == 0:
            rec.update(snapshot(problem, theta))
        return rec

    path = None
    if checkpoint_dir is not None:
        path = Path(checkpoint_dir) / f"{protocol}_eta{eta:g}_S{batch_size}.pt"
    key = _fingerprint(asdict(cfg), seed, protocol, eta, batch_size, tau_equil, tau_measure,
                       snapshots, _tensor_hash(start))  # fmt: skip
    res = train.sgd(
        train.loss_function(problem.model, cross_entropy),
        start,
        draw_minibatch(problem, batch_size, protocol),
        lr=eta,
        steps=steps,
        seed=run_seed,
        callback=callback,
        every=every,
        checkpoint=path,
        checkpoint_every=cfg.checkpoint_every,
        fingerprint=key,
    )
    excess = torch.zeros(snapshots, dtype=DTYPE)
    counts = torch.zeros(snapshots, dtype=DTYPE)
    snaps = [r for r in res.records if "sum_neg" in r]
    for r in res.records:
        j = (r["step"] - equil - 1) // block
        excess[j] += r["excess"]
        counts[j] += 1
    kappa = cfg.kappa(protocol, batch_size)
    return RunResult(
        protocol=protocol,
        eta=eta,
        batch_size=batch_size,
        kappa=kappa,
        C=eta * kappa / 4,
        steps=steps,
        block_excess=excess / counts,
        sum_neg=torch.tensor([r["sum_neg"] for r in snaps], dtype=DTYPE),
        n_neg=torch.tensor([r["n_neg"] for r in snaps]),
        trace=torch.tensor([r["trace"] for r in snaps], dtype=DTYPE),
        lam_min=torch.tensor([r["lam_min"] for r in snaps], dtype=DTYPE),
        last_eigenvalues=snaps[-1]["eigenvalues"],
        end_floor_trace=project_to_floor(problem, res.theta, cfg)[1],
        resumed_from=res.resumed_from,
    )


@dataclass
class Sweep:
    """An η sweep at S = ``batch_size0`` and an S sweep at η = ``eta0``, sharing their centre
    run (the same object in both lists)."""

    protocol: str
    eta_sweep: list[RunResult]
    batch_sweep: list[RunResult]

    @property
    def runs(self) -> list[RunResult]:
        """Every distinct run, the centre once."""
        out: list[RunResult] = []
        for r in self.eta_sweep + self.batch_sweep:
            if all(r is not o for o in out):
                out.append(r)
        return out


def sweep(
    problem: Problem,
    floor: Floor,
    cfg: NegativeEigenvaluesConfig,
    protocol: str,
    seed: int,
    *,
    tau: tuple[float, float] | None = None,
    snapshots: int | None = None,
    checkpoint_dir: str | Path | None = None,
) -> Sweep:
    """Both sweeps of ``cfg`` for one protocol; finished runs are read from their checkpoints."""
    done: dict[tuple[float, int], RunResult] = {}

    def get(eta: float, batch_size: int) -> RunResult:
        if (eta, batch_size) not in done:
            done[eta, batch_size] = run_sgd(
                problem, floor, cfg, protocol, eta, batch_size, seed,
                tau=tau, snapshots=snapshots, checkpoint_dir=checkpoint_dir,
            )  # fmt: skip
        return done[eta, batch_size]

    eta_runs = [get(eta, cfg.batch_size0) for eta in sorted(cfg.etas)]
    batch_runs = [get(cfg.eta0, s) for s in sorted(cfg.batch_sizes)]
    return Sweep(protocol, eta_runs, batch_runs)


# --------------------------------------------------------------------------------------------
# Fits, confidence intervals and the collapse test
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LineFit:
    """Ordinary least squares y = slope·x + intercept with t-distribution intervals.

    ``se_*`` are the usual OLS standard errors (residual variance with n − 2 degrees of
    freedom); ``ci_*`` are ``level`` two-sided intervals.
    """

    slope: float
    intercept: float
    r2: float
    se_slope: float
    se_intercept: float
    ci_slope: tuple[float, float]
    ci_intercept: tuple[float, float]
    n: int


def ols(x: Any, y: Any, level: float = 0.95) -> LineFit:
    """Fit y = slope·x + intercept by ordinary least squares (see :class:`LineFit`)."""
    number("level", level, lo=0, hi=1, lo_open=True, hi_open=True)
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or x.size < 3:
        raise ValueError(f"x and y must be 1-d of equal length ≥ 3; got {x.shape} and {y.shape}")
    n = x.size
    xm, ym = x.mean(), y.mean()
    sxx = ((x - xm) ** 2).sum()
    if sxx == 0:
        raise ValueError("x must not be constant: the slope is undefined")
    slope = ((x - xm) * (y - ym)).sum() / sxx
    intercept = ym - slope * xm
    resid = y - intercept - slope * x
    sst = ((y - ym) ** 2).sum()
    r2 = 1 - (resid**2).sum() / sst if sst > 0 else 1.0
    s2 = (resid**2).sum() / (n - 2)
    se_slope = math.sqrt(s2 / sxx)
    se_intercept = math.sqrt(s2 * (1 / n + xm**2 / sxx))
    t = float(stats.t.ppf(0.5 + level / 2, n - 2))
    return LineFit(
        slope=float(slope),
        intercept=float(intercept),
        r2=float(r2),
        se_slope=se_slope,
        se_intercept=se_intercept,
        ci_slope=(float(slope - t * se_slope), float(slope + t * se_slope)),
        ci_intercept=(float(intercept - t * se_intercept), float(intercept + t * se_intercept)),
        n=n,
    )


def two_term_fit(x: Any, y: Any) -> tuple[float, float]:
    """Least squares y = a·√x + b·x (no intercept): (a, b).  A flat floor has a = 0."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    design = np.stack([np.sqrt(x), x], 1)
    (a, b), *_ = np.linalg.lstsq(design, y, rcond=None)
    return float(a), float(b)


def power_law_exponent(x: Any, y: Any) -> float:
    """Slope p of log|y| = p·log x + c (y of one sign, x > 0): p = 1 for the paper's law."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if (x <= 0).any() or not ((y < 0).all() or (y > 0).all()):
        raise ValueError("power_law_exponent needs x > 0 and y of one sign")
    return float(np.polyfit(np.log(x), np.log(np.abs(y)), 1)[0])


@dataclass(frozen=True)
class Interval:
    """An estimate with a two-sided ``level`` interval."""

    value: float
    lo: float
    hi: float

    def contains(self, v: float) -> bool:
        return self.lo <= v <= self.hi


@dataclass(frozen=True)
class Collapse:
    """The collapse test: the OLS slope of Σλ₋ on ⟨L⟩ − L* from the η sweep against the
    one from the S sweep.  ``z`` = (w_η − w_S)/se, with se the bootstrap standard deviation of
    the difference; ``resolution`` = 3·se/|mean slope|: the smallest relative difference the
    test would call significant at 3σ."""

    slope_eta: Interval
    slope_batch: Interval
    diff: float
    se: float
    z: float
    resolution: float


@dataclass(frozen=True)
class A3Analysis:
    """Fits of Σλ₋ against ⟨L⟩ − L* over the runs of a sweep, with bootstrap intervals.

    ``line`` holds the t-distribution intervals of OLS on the run means (they include lack of
    fit); ``slope``, ``intercept`` and ``r2`` are bootstrap intervals (sampling noise of the
    time averages only).  ``a_sqrt``/``b_lin`` are the two-term law's coefficients,
    ``exponent`` the log–log slope.
    """

    x: np.ndarray
    y: np.ndarray
    y_se: np.ndarray
    line: LineFit
    slope: Interval
    intercept: Interval
    r2: Interval
    a_sqrt: Interval
    b_lin: Interval
    exponent: Interval
    collapse: Collapse
    autocorrelation: float
    level: float = field(default=0.95)


def _run_means(r: RunResult, idx: np.ndarray) -> tuple[float, float]:
    return float(r.block_excess.numpy()[idx].mean()), float(r.sum_neg[:, 0].numpy()[idx].mean())


def analyse(sw: Sweep, n_boot: int, seed: int, level: float = 0.95) -> A3Analysis:
    """Fit the law over all runs of ``sw`` and run the collapse test.

    Intervals come from a bootstrap over the measurement blocks of each run: each replicate
    resamples every run's blocks with replacement (the centre run once, shared by both
    sweeps), recomputes the run means and refits.  The runs are a fixed design (η and S are
    chosen), so the randomness to propagate is that of the time averages.
    """
    positive_int("n_boot", n_boot)
    runs = sw.runs
    pos = {id(r): i for i, r in enumerate(runs)}
    eta_i = [pos[id(r)] for r in sw.eta_sweep]
    bat_i = [pos[id(r)] for r in sw.batch_sweep]
    full = [np.arange(r.block_excess.numel()) for r in runs]
    x, y = np.array([_run_means(r, i) for r, i in zip(runs, full, strict=True)]).T
    rng = np.random.default_rng(seed)
    keys = ("slope", "intercept", "r2", "a", "b", "p", "w_eta", "w_batch")
    boot = {k: np.empty(n_boot) for k in keys}
    for b in range(n_boot):
        idx = [rng.integers(0, len(i), len(i)) for i in full]
        xb, yb = np.array([_run_means(r, i) for r, i in zip(runs, idx, strict=True)]).T
        line = ols(xb, yb)
        boot["slope"][b], boot["intercept"][b], boot["r2"][b] = line.slope, line.intercept, line.r2
        boot["a"][b], boot["b"][b] = two_term_fit(xb, yb)
        boot["p"][b] = power_law_exponent(xb, yb) if (yb < 0).all() and (xb > 0).all() else np.nan
        boot["w_eta"][b] = ols(xb[eta_i], yb[eta_i]).slope
        boot["w_batch"][b] = ols(xb[bat_i], yb[bat_i]).slope
    q = (50 * (1 - level), 50 * (1 + level))

    def interval(value: float, key: str) -> Interval:
        if np.isnan(boot[key]).all():  # e.g. no exponent where Σλ₋ changes sign
            return Interval(float(value), float("nan"), float("nan"))
        lo, hi = np.nanpercentile(boot[key], q)
        return Interval(float(value), float(lo), float(hi))

    line = ols(x, y, level)
    a, b_lin = two_term_fit(x, y)
    p = power_law_exponent(x, y) if (y < 0).all() and (x > 0).all() else float("nan")
    w_eta, w_batch = ols(x[eta_i], y[eta_i]).slope, ols(x[bat_i], y[bat_i]).slope
    se = float(np.std(boot["w_eta"] - boot["w_batch"], ddof=1))
    collapse = Collapse(
        slope_eta=interval(w_eta, "w_eta"),
        slope_batch=interval(w_batch, "w_batch"),
        diff=w_eta - w_batch,
        se=se,
        z=abs(w_eta - w_batch) / se if se > 0 else float("inf"),
        resolution=3 * se / abs((w_eta + w_batch) / 2),
    )
    # lag-1 autocorrelation of Σλ₋ between consecutive snapshots, pooled over runs
    num = den = 0.0
    for r in runs:
        d = r.sum_neg[:, 0].numpy() - r.sum_neg[:, 0].numpy().mean()
        num += float((d[1:] * d[:-1]).sum())
        den += float((d * d).sum())
    return A3Analysis(
        x=x,
        y=y,
        y_se=np.array([r.sum_negative_se for r in runs]),
        line=line,
        slope=interval(line.slope, "slope"),
        intercept=interval(line.intercept, "intercept"),
        r2=interval(line.r2, "r2"),
        a_sqrt=interval(a, "a"),
        b_lin=interval(b_lin, "b"),
        exponent=interval(p, "p"),
        collapse=collapse,
        autocorrelation=num / den if den > 0 else 0.0,
        level=level,
    )


def excess_vs_theory(sw: Sweep, trace_floor: float) -> tuple[np.ndarray, np.ndarray]:
    """Relative errors, per run (``Sweep.runs`` order), of A.3's ⟨L⟩ − L* = 𝒞·Σλ_i with the
    trace at the floor (as printed) and with the run's own mean trace
    (:attr:`RunResult.excess_a3`)."""
    printed = np.array([r.excess / (r.C * trace_floor) - 1 for r in sw.runs])
    running = np.array([r.excess / r.excess_a3 - 1 for r in sw.runs])
    return printed, running


def excess_error_budget(sw: Sweep, floor: Floor, tau_equil: float) -> np.ndarray:
    """What A.3's leading-order ⟨L⟩ − L* = 𝒞·Σλ_i neglects, per run, relative to it:

    * three standard errors of the time average;
    * eq. 11's O(η) term, ⟨θ_i²⟩ = ηκ/(2 − ηλ_i) ≈ (ηκ/2)(1 + ηλ_i/2), weighted by λ_i:
      (η/2)Σλ_i²/Σλ_i;
    * the share of the trace in directions slower than the equilibration window
      (λ_i < 1/τ_equil), which have not reached their stationary ⟨θ_i²⟩.
    """
    lam = floor.eigenvalues[floor.eigenvalues > floor.zero_tol]
    eta_term = (lam**2).sum().item() / (2 * lam.sum().item())
    slow = lam[lam < 1 / tau_equil].sum().item() / lam.sum().item()
    return np.array([3 * r.excess_se / r.excess + r.eta * eta_term + slow for r in sw.runs])


def threshold_sensitivity(sw: Sweep) -> float:
    """max over runs and thresholds of |⟨Σλ₋⟩(tol)/⟨Σλ₋⟩(zero_tol) − 1|."""
    worst = 0.0
    for r in sw.runs:
        means = r.sum_neg.mean(0)
        if means[0] != 0:
            worst = max(worst, (means / means[0] - 1).abs().max().item())
    return worst


# --------------------------------------------------------------------------------------------
# The curved floor: the √𝒞 term
# --------------------------------------------------------------------------------------------
@dataclass
class CurvatureProbe:
    """Exact Σλ₋ at frozen displacements θ* + √𝒞·u from the floor, against two first-order
    (in √𝒞) predictions built from T = ∂_u H, the derivative of the Hessian along u at θ*:

    * ``linear``: s₋(H* + √𝒞·T), the spectrum of the Hessian expanded to first order;
    * ``floor_term``: √𝒞·s₋(N⊤TN) with N the floor's null space: the part that comes from the
      curvature of the floor alone (zero for a flat floor, as in Lemma 1's coordinates).

    u = Σ_i √2 z_i v_i over the floor's non-degenerate eigenvectors (z ~ N(0, I)), so that
    ⟨θ_i²⟩ = 2𝒞 as in eq. 11 at leading order.  ``shape_ratio`` = ‖N⊤TN‖_F/‖T‖_F;
    ``fd_relerr`` compares the central differences for T at steps h and 2h.
    """

    cs: np.ndarray
    exact: np.ndarray
    linear: np.ndarray
    floor_term: np.ndarray
    excess: np.ndarray
    shape_ratio: float
    fd_relerr: float
    null_dim: int

    @property
    def linear_share(self) -> np.ndarray:
        """First-order prediction / exact Σλ₋, per 𝒞 (→ 1 as 𝒞 → 0)."""
        return self.linear / self.exact

    @property
    def floor_share(self) -> np.ndarray:
        """The floor-curvature term / exact Σλ₋, per 𝒞."""
        return self.floor_term / self.exact


def curvature_probe(
    problem: Problem, floor: Floor, cs: tuple[float, ...], seed: int
) -> CurvatureProbe:
    """Measure the curved floor's first-order term (see :class:`CurvatureProbe`)."""
    numbers("cs", cs, lo=0, lo_open=True)
    if list(cs) != sorted(set(cs)):
        raise ValueError(f"cs={cs!r} must be strictly increasing")
    h_floor = problem.hessian(floor.theta)
    lam, vec = torch.linalg.eigh(h_floor)
    tol = floor.zero_tol
    null = vec[:, lam.abs() <= tol]
    rng = vec[:, lam > tol]
    gen = torch.Generator(device=problem.device).manual_seed(seed)
    z = torch.randn(rng.shape[1], generator=gen, dtype=DTYPE, device=problem.device)
    u = rng @ (math.sqrt(2) * z)
    step = 1e-4 / u.norm().item()  # a displacement of 1e-4: third-order error ~1e-8 relative

    def derivative(hstep: float) -> Tensor:
        plus = problem.hessian(floor.theta + hstep * u)
        minus = problem.hessian(floor.theta - hstep * u)
        return (plus - minus) / (2 * hstep)

    d1, d2 = derivative(step), derivative(2 * step)
    a1, a2 = null.T @ d1 @ null, null.T @ d2 @ null
    fd_relerr = ((a1 - a2).norm() / a1.norm()).item() if a1.norm() > 0 else 0.0
    a_eig = torch.linalg.eigvalsh(a1)
    s_a = a_eig[a_eig < 0].sum().item()
    exact, linear, floor_term, excess = [], [], [], []
    for c in cs:
        theta = floor.theta + math.sqrt(c) * u
        exact.append(problem.spectrum(theta).sum_negative())
        linear.append(spectrum(h_floor + math.sqrt(c) * d1).sum_negative())
        floor_term.append(math.sqrt(c) * s_a)
        excess.append(problem.loss(theta) - floor.loss)
    return CurvatureProbe(
        cs=np.array(cs, dtype=np.float64),
        exact=np.array(exact),
        linear=np.array(linear),
        floor_term=np.array(floor_term),
        excess=np.array(excess),
        shape_ratio=(a1.norm() / d1.norm()).item(),
        fd_relerr=fd_relerr,
        null_dim=null.shape[1],
    )


def probe_deviation(probe: CurvatureProbe, sw: Sweep) -> float:
    """max over the SGD runs inside the probe's range of 𝒞 of |⟨Σλ₋⟩/Σλ₋(probe at 𝒞) − 1|, the
    probe interpolated linearly in log–log coordinates (NaN when no run is inside)."""
    lc, ly = np.log(probe.cs), np.log(np.abs(probe.exact))
    devs = [
        abs(r.sum_negative / -np.exp(np.interp(np.log(r.C), lc, ly)) - 1)
        for r in sw.runs
        if probe.cs[0] <= r.C <= probe.cs[-1] and r.sum_negative < 0
    ]
    return float(max(devs)) if devs else float("nan")


def checkpoint_dir(results_dir: str | Path, scale: str, seed: int) -> Path:
    """``<build>/checkpoints/<scale>/negative_eigenvalues/seed<seed>`` for a results folder
    ``<build>/results/<scale>``."""
    return (
        Path(results_dir).parent.parent
        / "checkpoints"
        / scale
        / "negative_eigenvalues"
        / (f"seed{seed}")
    )
