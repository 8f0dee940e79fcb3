r"""The Hessian trace along projected SGD paths (Section 4.3, Fig. 3, App. A.2, Fig. 4).

Section 4.3 estimates the trace of the Hessian of the training loss at the projected points of
Fig. 1 and finds that it falls along the path.  This module measures it on the paths of
:mod:`~hessnoise.experiments.projected_paths`, reusing their checkpoints, with the curvature at
each point from :mod:`~hessnoise.experiments.path_curvature`:

* :class:`TraceConfig` — the networks, seeds and budgets of each scale;
* :func:`trace_run` — one network and seed: its path's valley (the epochs from which every
  projection reached the threshold), the curvature at each projected point and at the SGD
  state of the same epoch;
* :func:`trace_runs` — every configured network and seed, two runs at a time (one thread
  each), since runs are independent.

The numbers are analysed in :mod:`~hessnoise.experiments.trace_analysis`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from hessnoise._validate import number, positive_int
from hessnoise.experiments import projected_paths as pp
from hessnoise.experiments.path_curvature import PointCurvature, curvature_at
from hessnoise.experiments.path_problem import PathConfig, RandomLabelConfig
from hessnoise.experiments.projected_paths import PathRun, valley_epochs
from hessnoise.progress import report
from hessnoise.scale_invariance import Partition, partition
from hessnoise.scales import by_scale
from hessnoise.threads import threads


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
        """``smoke``: the projected-paths chapter's tiny network, δ = 1.2, with and without
        BatchNorm, 2 seeds.  ``small``: its small network
        (:func:`~hessnoise.experiments.projected_paths.small_path`) with and without BatchNorm,
        5 seeds, Hutch++ with 18 products, Lanczos with 10.  ``paper``: PreAct-ResNet18 and
        VGG16 on CIFAR-10 (Fig. 3) and DenseNet-BC on CIFAR-100 (Fig. 4a), 10 seeds as in the
        paper, and the two random-label runs (Fig. 4b–c); for a GPU."""
        return by_scale(scale, smoke=_smoke(), small=_small(), paper=_paper())


def required_data(scale: str) -> dict[str, bool]:
    """The datasets this chapter's runs read at ``scale``, each with whether it may be
    downloaded (see :func:`hessnoise.experiments.floor.required_data`)."""
    cfg = TraceConfig.for_scale(scale)
    out: dict[str, bool] = {}
    for c in (*cfg.paths, *(r.path for r in cfg.random_labels)):
        out[c.dataset] = out.get(c.dataset, False) or c.download
    return out


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
