r"""The curvature at one point of a projected path (Section 4.3): what the trace chapter measures.

* :func:`path_hessian` — the Hessian of exactly the loss the paths were projected with (the
  full training set in the path's fixed chunks, each normalized with its own statistics) at a
  θ, as a matvec;
* :func:`curvature_at` — at one θ: the trace by Hutch++ with its standard error and seed,
  split over the groups of a :class:`~hessnoise.scale_invariance.Partition` (per-layer traces
  and the scale-invariant trace from the same matvecs), the largest eigenvalue by Lanczos with
  its residual bound, and the weight norms; cached under a fingerprint;
* :func:`hessian_checks` — what makes that curvature the curvature of the path's loss.

The runs that call it along whole paths are in :mod:`~hessnoise.experiments.trace_along_path`.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import Tensor

from hessnoise import checkpoints
from hessnoise.curvature import HessianOperator, extreme_eigenvalues, hutchpp_groups
from hessnoise.curvature.probes import Matvec
from hessnoise.experiments.path_problem import Problem, data_key
from hessnoise.losses import cross_entropy
from hessnoise.params import FlatNet
from hessnoise.report import Check
from hessnoise.scale_invariance import Partition
from hessnoise.threads import threads

# Part of every curvature checkpoint's fingerprint: bump it when what one holds changes.
CHECKPOINT_VERSION = 1


def path_hessian(problem: Problem, theta: Tensor) -> tuple[HessianOperator, Matvec]:
    """The Hessian at θ ``(P,)`` of the path's full-batch training loss, the mean over its fixed
    chunks of the chunk's mean cross-entropy (BatchNorm with each chunk's statistics): the
    operator, and a float64 matvec ``(k, P) → (k, P)`` that applies it one probe at a time.

    Batches are never merged (that would change the BatchNorm statistics), and products are
    reverse-over-reverse with the first backward graph kept: on this network one product at a
    time took 0.07 s of CPU against 0.10–0.13 s per probe in a batched call (measured on the
    small scale's network, 2,000 images, one thread)."""
    chunks = list(zip(problem.x.split(problem.chunk), problem.q.split(problem.chunk), strict=True))
    op = HessianOperator(problem.net.module, cross_entropy, chunks, at=theta,
                         merge_batches=False, mode="rev-rev")  # fmt: skip

    def matvec(v: Tensor) -> Tensor:
        return torch.stack([op(row) for row in v]).to(torch.float64)

    return op, matvec


@dataclass
class PointCurvature:
    """The curvature at one θ of a path.

    ``trace`` ± ``trace_se``: tr H by Hutch++ (``n_matvecs`` products with Lanczos included,
    probes from ``seed``); ``invariant`` ± ``invariant_se``: the scale-invariant trace tr(DH)
    from the same products (equal to ``trace`` for a network without scale-invariant groups);
    ``group_traces`` ``(G,)``: tr H_gg per group of the partition and ``group_norms`` ``(G,)``:
    ‖θ_g‖.  ``lam_max`` and ``lam_min`` are the extreme Ritz values of ``lanczos_steps``
    Lanczos steps with their residual bounds (``nan`` when Lanczos was not run); ``seconds``
    the wall time it took when computed."""

    step: int
    trace: float
    trace_se: float
    invariant: float
    invariant_se: float
    group_traces: Tensor
    group_norms: Tensor
    lam_max: float
    lam_max_residual: float
    lam_min: float
    lam_min_residual: float
    lanczos_steps: int
    n_matvecs: int
    seed: int
    seconds: float = 0.0


def curvature_key(problem: Problem, theta: Tensor, budget: int, lanczos_steps: int,
                  seed: int) -> str:  # fmt: skip
    """Fingerprint of a curvature point: the data, θ, the budgets and the probes' seed."""
    return checkpoints.fingerprint(CHECKPOINT_VERSION, "curvature", data_key(problem),
                                   checkpoints.tensor_hash(theta), budget, lanczos_steps,
                                   seed)  # fmt: skip


def curvature_at(
    problem: Problem,
    theta: Tensor,
    part: Partition,
    *,
    budget: int,
    lanczos_steps: int,
    seed: int,
    step: int = 0,
    path: str | Path | None = None,
) -> PointCurvature:
    """The trace (Hutch++, ``budget`` products, probes from ``seed``), split over ``part``'s
    groups, and, with ``lanczos_steps`` > 0, λ_max and λ_min by Lanczos, at θ; read back from
    ``path`` when it holds this computation."""
    key = curvature_key(problem, theta, budget, lanczos_steps, seed)
    saved = checkpoints.load_matching(path, key)
    if saved is not None:
        saved.pop("fingerprint")
        return PointCurvature(**saved)
    t0 = time.perf_counter()
    with threads("small"):
        op, matvec = path_hessian(problem, theta)
        est = hutchpp_groups(matvec, op.dim, part.labels, budget=budget, seed=seed)
        plain, inv = est.combine(), est.combine(part.weights(theta))
        nan = (math.nan, math.nan)
        top, bottom = nan, nan
        if lanczos_steps > 0:
            ext = extreme_eigenvalues(matvec, op.dim, k=1, steps=lanczos_steps, seed=seed)
            top = (ext.largest[0].item(), ext.largest_residual[0].item())
            bottom = (ext.smallest[0].item(), ext.smallest_residual[0].item())
    point = PointCurvature(
        step=step, trace=plain.value, trace_se=plain.se, invariant=inv.value,
        invariant_se=inv.se, group_traces=est.values, group_norms=part.group_norms(theta),
        lam_max=top[0], lam_max_residual=top[1],
        lam_min=bottom[0], lam_min_residual=bottom[1], lanczos_steps=lanczos_steps,
        n_matvecs=est.n_matvecs + (lanczos_steps if lanczos_steps > 0 else 0), seed=seed,
        seconds=time.perf_counter() - t0,
    )  # fmt: skip
    if path is not None:
        checkpoints.save_checkpoint(path, {**asdict(point), "fingerprint": key})
    return point


def in_float64(problem: Problem) -> Problem:
    """The same problem computed in float64: data, targets and a float64 copy of the network
    (for references; the runs themselves stay in their own dtype)."""
    module = copy.deepcopy(problem.net.module).double()
    return replace(problem, x=problem.x.double(), q=problem.q.double(),
                   x_val=problem.x_val.double(), q_val=problem.q_val.double(),
                   net=FlatNet(module), theta_init=problem.theta_init.double())  # fmt: skip


def hessian_checks(problem: Problem, theta: Tensor, part: Partition, seed: int) -> list[Check]:
    """What makes the curvature at θ a curvature of the path's loss, as checks:

    * ``operator_loss_is_path_loss``: the operator's loss and gradient against
      :meth:`~hessnoise.experiments.path_problem.Problem.loss_and_grad`, the function the
      projections descended (relative difference);
    * ``hvp_matches_finite_difference``: in float64, Hv against the central difference
      (∇L(θ + εv) − ∇L(θ − εv))/2ε of that function's gradient, ε = 1e-6, v a random unit
      vector (relative error).  The loss of a ReLU network is smooth only between kinks:
      millions of pre-activations (images × units) change sign somewhere, and a step of
      1e-4 or 1e-5 crosses some of them (we measured errors of order 1 there), while 1e-6
      crosses none at the point checked and leaves an error of order 1e-6;
    * ``float32_hvp_error``: the products in the network's dtype, which the estimates use,
      against float64;
    * ``scale_invariance_loss``: the relative change of the loss when every scale-invariant
      group is multiplied by a random factor in [0.5, 2] (BatchNorm's ε makes it nonzero);
    * ``scale_invariance_euler``: the largest |∇_g L · θ_g| / (‖∇_g L‖ ‖θ_g‖) over the
      invariant groups, zero for a function of degree 0 in θ_g (Euler)."""
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(theta.numel(), generator=gen, dtype=torch.float64)
    v = v / v.norm()
    draw = 0.5 + 1.5 * torch.rand(part.n_groups, generator=gen, dtype=torch.float64)
    factors = torch.where(part.invariant, draw, torch.ones_like(draw))
    dev = problem.device
    p64, th64, v64 = in_float64(problem), theta.double().to(dev), v.to(dev)
    eps = 1e-6
    with threads("small"):
        op, matvec = path_hessian(problem, theta)
        op_loss, op_grad = op.loss_and_gradient()
        loss, grad = problem.loss_and_grad(theta.to(dev))
        hv64 = path_hessian(p64, th64)[1](v64.unsqueeze(0))[0].cpu()
        hv32 = matvec(v64.unsqueeze(0))[0].cpu()
        fd = (p64.loss_and_grad(th64 + eps * v64)[1] - p64.loss_and_grad(th64 - eps * v64)[1]).cpu()
        fd = fd / (2 * eps)
        loss64, grad64 = p64.loss_and_grad(th64)
        loss_scaled, _ = p64.loss_and_grad(part.rescale(th64, factors))
    grad64, th = grad64.cpu(), th64.cpu()
    euler = 0.0
    for g in torch.nonzero(part.invariant).flatten().tolist():
        gg, tg = grad64[part.labels == g], th[part.labels == g]
        if gg.norm() > 0:
            euler = max(euler, (gg @ tg).abs().item() / (gg.norm() * tg.norm()).item())
    same = abs(op_loss - loss) / abs(loss) + ((op_grad - grad).norm() / grad.norm()).item()
    fd_err = ((hv64 - fd).norm() / hv64.norm()).item()
    f32_err = ((hv32 - hv64).norm() / hv64.norm()).item()
    invariance = abs(loss_scaled - loss64) / abs(loss64)
    return [
        Check("operator_loss_is_path_loss", same, "< 1e-5", same < 1e-5, "consistency"),
        Check("hvp_matches_finite_difference", fd_err, "< 1e-4", fd_err < 1e-4, "consistency"),
        Check("float32_hvp_error", f32_err, "< 1e-3", f32_err < 1e-3, "consistency"),
        Check("scale_invariance_loss", invariance, "< 1e-4", invariance < 1e-4, "consistency"),
        Check("scale_invariance_euler", euler, "< 1e-3", euler < 1e-3, "consistency"),
    ]
