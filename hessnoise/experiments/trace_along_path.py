r"""The Hessian trace along projected SGD paths (Section 4.3, Fig. 3, App. A.2, Fig. 4).

Section 4.3 estimates the trace of the Hessian of the training loss at the projected points of
Fig. 1 and finds that it falls along the path.  This module measures it on the paths of
:mod:`~hessnoise.experiments.projected_paths`, reusing their checkpoints:

* :func:`path_hessian` — the Hessian of exactly the loss the paths were projected with (the
  full training set in the path's fixed chunks, each normalized with its own statistics) at a
  θ, as a matvec;
* :func:`curvature_at` — at one θ: the trace by Hutch++ with its standard error and seed,
  split over the groups of a :class:`~hessnoise.scale_invariance.Partition` (per-layer traces
  and the scale-invariant trace from the same matvecs), the largest eigenvalue by Lanczos with
  its residual bound, and the weight norms; cached under a fingerprint;
* :func:`trace_run` — one network and seed: its path's valley (the epochs from which every
  projection reached the threshold), the curvature at each projected point and at the SGD
  state of the same epoch;
* :func:`trace_runs` — every configured network and seed, two runs at a time (one thread
  each), since runs are independent.

The numbers are analysed in :mod:`~hessnoise.experiments.trace_analysis`.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import Tensor

from hessnoise import checkpoints
from hessnoise._validate import number, positive_int
from hessnoise.curvature import HessianOperator, extreme_eigenvalues, hutchpp_groups
from hessnoise.curvature.probes import Matvec
from hessnoise.experiments import projected_paths as pp
from hessnoise.experiments.path_problem import PathConfig, Problem, RandomLabelConfig, data_key
from hessnoise.experiments.projected_paths import PathRun, valley_epochs
from hessnoise.losses import cross_entropy
from hessnoise.params import FlatNet
from hessnoise.progress import report
from hessnoise.report import Check
from hessnoise.scale_invariance import Partition, partition
from hessnoise.scales import by_scale
from hessnoise.threads import threads

# Part of every curvature checkpoint's fingerprint: bump it when what one holds changes.
CHECKPOINT_VERSION = 1


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TraceConfig:
    """The chapter's runs.

    ``paths`` are the networks whose projected paths are measured, the first one the main
    (Fig. 3); ``seeds`` runs of each (seeds ``seed, seed + 1, …``).  ``budget`` is the number
    of Hessian-vector products of one Hutch++ estimate, ``lanczos_steps`` those of one Lanczos
    run for λ_max.  The curvature is measured at ``points`` epochs spread evenly over each
    path's valley (all of them when the valley is shorter).
    ``random_labels`` are App. A.2.2's runs (Fig. 4b–c), one seed each.  ``workers`` runs go
    at a time, each on one thread."""

    paths: tuple[PathConfig, ...]
    seeds: int
    budget: int
    lanczos_steps: int
    points: int = 20
    random_labels: tuple[RandomLabelConfig, ...] = ()
    workers: int = 2

    def __post_init__(self) -> None:
        if not self.paths:
            raise ValueError("paths=() must hold at least one configuration")
        positive_int("seeds", self.seeds)
        number("budget", self.budget, lo=3, integer=True)
        positive_int("lanczos_steps", self.lanczos_steps)
        number("points", self.points, lo=2, integer=True)
        positive_int("workers", self.workers)

    @classmethod
    def for_scale(cls, scale: str) -> TraceConfig:
        """``smoke``: the projected-paths chapter's tiny network, δ = 1.2, with and without BatchNorm,
        2 seeds.  ``small``: its small network (:func:`~hessnoise.experiments.projected_paths.
        small_path`) with and without BatchNorm, 5 seeds, Hutch++ with 18 products, Lanczos
        with 10.  ``paper``: PreAct-ResNet18 and VGG16 on CIFAR-10 (Fig. 3) and DenseNet-BC on
        CIFAR-100 (Fig. 4a), 10 seeds as in the paper, and the two random-label runs
        (Fig. 4b–c); for a GPU."""
        return by_scale(scale, smoke=_smoke(), small=_small(), paper=_paper())


def _valley_config(cfg: PathConfig) -> PathConfig:
    """The path as the trace needs it: every epoch projected, no refinement (the trace is
    taken at epochs; the connectedness test is the previous chapter's)."""
    return replace(cfg, max_depth=0)


def _smoke() -> TraceConfig:
    base = pp.ProjectedPathsConfig.for_scale("smoke")
    # δ looser than the previous chapter's, so that every tiny run has a valley of a few epochs
    bn = replace(_valley_config(base.paths[0]), threshold=1.2)
    no_bn = replace(bn, name=bn.name.replace(" + BN", ""), batch_norm=False)
    rl = replace(base.random_labels[0], path=_valley_config(base.random_labels[0].path))
    return TraceConfig(paths=(bn, no_bn), seeds=2, budget=9, lanczos_steps=6, points=4,
                       random_labels=(rl,))  # fmt: skip


def _small() -> TraceConfig:
    base = pp.ProjectedPathsConfig.for_scale("small")
    rl = replace(base.random_labels[0], path=_valley_config(base.random_labels[0].path))
    return TraceConfig(
        paths=(_valley_config(pp.small_path()), _valley_config(pp.small_path(batch_norm=False))),
        seeds=5, budget=18, lanczos_steps=10, points=20, random_labels=(rl,),
    )  # fmt: skip


def _paper() -> TraceConfig:
    base = pp.ProjectedPathsConfig.for_scale("paper")
    rl = tuple(replace(r, path=_valley_config(r.path)) for r in base.random_labels)
    return TraceConfig(paths=tuple(_valley_config(c) for c in base.paths), seeds=10, budget=30,
                       lanczos_steps=20, points=20, random_labels=rl, workers=1)  # fmt: skip


# --------------------------------------------------------------------------------------------
# Curvature at one point
# --------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------
# One path, many paths
# --------------------------------------------------------------------------------------------
@dataclass
class TraceRun:
    """The trace along one path: the path (:class:`~hessnoise.experiments.projected_paths.
    PathRun`, its valley projected), the valley's ``epochs``, the curvature at each epoch's
    projection (``projected``) and SGD state (``sgd``; the same record where the state was
    itself a minimum), the partition of θ, ``computed``: the points computed in this call (the
    others were read back), and the wall and CPU seconds of the call (CPU time of its thread,
    which did all of its work: one intra-op thread)."""

    cfg: PathConfig
    seed: int
    path: PathRun
    epochs: list[int]
    projected: list[PointCurvature]
    sgd: list[PointCurvature]
    partition: Partition
    computed: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0

    @property
    def ipe(self) -> int:
        return self.cfg.iters_per_epoch

    def val_excess(self, kind: str = "projected") -> list[float]:
        """The validation loss above H(q) at each point of ``kind`` (``'projected'``/``'sgd'``)."""
        if kind == "projected":
            return [self.path.points[e * self.ipe].val_excess for e in self.epochs]
        return [self.path.states[e].val_excess for e in self.epochs]

    def train_excess(self, kind: str = "projected") -> list[float]:
        """The training loss above H(q) at each point of ``kind``."""
        if kind == "projected":
            return [self.path.points[e * self.ipe].excess for e in self.epochs]
        return [self.path.states[e].train_excess for e in self.epochs]

    def points(self, kind: str = "projected") -> list[PointCurvature]:
        return self.projected if kind == "projected" else self.sgd


def spread(epochs: list[int], n: int) -> list[int]:
    """``n`` of ``epochs`` (sorted) spread evenly, the first and the last included; all of
    them when there are at most ``n``."""
    if len(epochs) <= n:
        return list(epochs)
    picks = sorted({round(i * (len(epochs) - 1) / (n - 1)) for i in range(n)})
    return [epochs[i] for i in picks]


def probe_seed(seed: int, step: int) -> int:
    """The probes' seed at iteration ``step`` of the run with ``seed``: one per point, the same
    for a projection and the SGD state of its iteration (so that when they are one θ, they
    are one estimate)."""
    return seed * 1_000_000 + step


def trace_run(
    cfg: PathConfig,
    seed: int,
    device: torch.device | str,
    folder: str | Path,
    trace_folder: str | Path,
    tcfg: TraceConfig,
    *,
    path: PathRun | None = None,
) -> TraceRun:
    """The curvature along the valley of ``cfg``'s path with ``seed``: the path read from (or
    computed into) ``folder`` with its valley projected (:func:`~hessnoise.experiments.
    projected_paths.projected_path`), or ``path`` when given; each point's curvature cached
    under ``trace_folder``."""
    t0, c0 = time.perf_counter(), time.thread_time()
    if path is None:
        path = pp.projected_path(cfg, seed, device, folder, valley_only=True)
    problem = path.problem
    part = partition(problem.net.module)
    epochs = spread(valley_epochs(path), tcfg.points)
    projected, sgd, computed = [], [], 0
    trace_folder = Path(trace_folder)
    for e in epochs:
        k = e * path.ipe
        file = trace_folder / f"step{k:07d}"
        kw = dict(budget=tcfg.budget, seed=probe_seed(seed, k), step=k)
        before = file.with_suffix(".proj.pt").exists()
        p = curvature_at(problem, path.projected_theta(k), part, lanczos_steps=tcfg.lanczos_steps,
                         path=file.with_suffix(".proj.pt"), **kw)  # fmt: skip
        computed += not before
        projected.append(p)
        state = path.states[e].theta
        if torch.equal(state, path.projected_theta(k)):
            sgd.append(p)
            continue
        before = file.with_suffix(".sgd.pt").exists()
        sgd.append(curvature_at(problem, state, part, lanczos_steps=0,
                                path=file.with_suffix(".sgd.pt"), **kw))  # fmt: skip
        computed += not before
    return TraceRun(cfg, seed, path, epochs, projected, sgd, part, computed,
                    time.perf_counter() - t0, time.thread_time() - c0)  # fmt: skip


@dataclass
class RunSet:
    """:func:`trace_runs`' result: the runs by network name (in seed order), the wall and CPU
    seconds of the call (CPU of the whole process, every worker), the workers, and how many
    curvature points were computed in it out of how many."""

    runs: dict[str, list[TraceRun]]
    seconds: float
    cpu_seconds: float
    workers: int
    computed: int
    points: int

    def __getitem__(self, name: str) -> list[TraceRun]:
        return self.runs[name]


def trace_runs(
    tcfg: TraceConfig,
    seed: int,
    device: torch.device | str,
    checkpoints_of: Callable[[str, int], Path],
) -> RunSet:
    """:func:`trace_run` for every configured network and seeds ``seed … seed + seeds − 1``,
    ``tcfg.workers`` at a time on one thread each; ``checkpoints_of(experiment, seed)`` gives
    the checkpoint folders (:meth:`hessnoise.report.Chapter.checkpoints`): the paths' are the
    projected-paths chapter's, shared with it."""
    t0, c0 = time.perf_counter(), time.process_time()
    jobs = [(c, s) for c in tcfg.paths for s in range(seed, seed + tcfg.seeds)]

    def one(job: tuple[PathConfig, int]) -> TraceRun:
        c, s = job
        folder = checkpoints_of(pp.checkpoint_name(c), s)
        trace_folder = checkpoints_of(trace_name(c), s)
        return trace_run(c, s, device, folder, trace_folder, tcfg)

    out: dict[str, list[TraceRun]] = {c.name: [] for c in tcfg.paths}
    # One thread per run for the whole block: nested thread settings are then no-ops, so no
    # run changes another's count, and results are the bits a lone run gives.
    with threads(1), ThreadPoolExecutor(tcfg.workers) as pool:
        futures = [pool.submit(one, job) for job in jobs]
        for k, fut in enumerate(as_completed(futures), 1):
            run = fut.result()
            out[run.cfg.name].append(run)
            report(f"trace along paths: {k}/{len(jobs)} ({run.cfg.name}, seed {run.seed}) "
                   f"finished: {run.computed} points computed, {run.seconds:.1f} s, "
                   f"{run.cpu_seconds:.1f} s of CPU")  # fmt: skip
    for runs in out.values():
        runs.sort(key=lambda r: r.seed)
    every = [r for runs in out.values() for r in runs]
    return RunSet(out, time.perf_counter() - t0, time.process_time() - c0, tcfg.workers,
                  sum(r.computed for r in every),
                  sum(len({id(p) for p in r.projected + r.sgd}) for r in every))  # fmt: skip


def random_label_traces(
    tcfg: TraceConfig,
    seed: int,
    device: torch.device | str,
    checkpoints_of: Callable[[str, int], Path],
) -> list[TraceRun]:
    """The trace along the valley of each random-label run (App. A.2.2, Fig. 4b–c), read from
    the projected-paths chapter's checkpoints (computed where missing)."""
    out = []
    for r in tcfg.random_labels:
        folder = checkpoints_of(pp.checkpoint_name(r.path, "random-labels"), seed)
        with threads("small"):
            rl = pp.random_label_path(r, seed, device, folder)
        out.append(trace_run(r.path, seed, device, folder, checkpoints_of(
            trace_name(r.path, "random-labels"), seed), tcfg, path=rl.path))  # fmt: skip
    return out


def trace_name(cfg: PathConfig, kind: str = "path") -> str:
    """The experiment under which the curvature points of ``cfg``'s runs are kept."""
    return pp.checkpoint_name(cfg, kind).replace("projected_paths/", "trace_along_path/", 1)
