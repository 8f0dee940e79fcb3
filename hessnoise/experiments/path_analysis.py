r"""What a projected path shows, in plain numbers (Section 2.1.1, Fig. 1, App. A.2, Fig. 4).

* :func:`summarize` — a :class:`PathSummary`: how many points were projected (and inserted by
  the refinement), how many projections missed the threshold, how many segments are still not
  line-connected at the finest level and why, where the connected valley begins, the largest
  loss on a segment between two minima (the barrier), the distance travelled, the validation
  loss along the path, and the measured costs.
* :func:`path_curve` — the training and validation losses at every point of every segment,
  against the epoch: the main plot of Fig. 1.
* :func:`paper_costs` — the cost of the paper's runs on this machine, from the time of one
  forward and backward pass of each paper network, and the hours a full run would take.

Everything here reads finished runs and returns floats; nothing is trained.
"""

from __future__ import annotations

import itertools
import math
import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch

from hessnoise import models
from hessnoise.experiments.path_problem import PathConfig
from hessnoise.experiments.path_protocol import N_POINTS
from hessnoise.experiments.projected_paths import PathRun, RandomLabelRun
from hessnoise.losses import target_entropy
from hessnoise.threads import threads

PAPER_THRESHOLD = 0.005  # Section 2.1.1: "the minimal training loss, which is ~0.005"
# The paper's projected-point counts (Section 2.1.1): PreAct-ResNet18 and VGG16 on CIFAR-10.
PAPER_POINTS = {"preact-resnet18": 2700, "vgg16": 4020}


@dataclass(frozen=True)
class PathSummary:
    """A projected path in numbers.

    ``projected_points`` counts every projected SGD state, ``inserted_points`` those the
    refinement added between epochs.  Of the final segments, ``unconnected_segments`` are not
    line-connected; of those, ``unconnected_missed`` have an endpoint whose projection missed
    the threshold (refining cannot help them), ``unconnected_adjacent`` join adjacent
    iterations, and ``unconnected_depth`` stopped at ``max_depth``.  ``valley_start`` is the
    first epoch from which every projection reached the threshold and every segment is
    connected (``nan`` when the last segment is not), and ``valley_share`` the fraction of the
    run's epochs after it.  ``max_segment_excess_loss`` is the largest training loss above H(q)
    on any segment between two minima (``nan`` if there is none), ``barrier`` its largest rise
    above the higher endpoint.  ``sgd_first_below`` is the first epoch whose SGD state is itself
    below the threshold (``nan`` if none), ``sgd_below_threshold`` the share of epochs whose
    state is, and ``moved_median`` the median distance a projection moved its state.
    ``distance`` is the length of the projected path (the sum of
    its segments), ``sgd_distance`` that of the SGD path sampled at the ends of epochs,
    ``end_to_end`` the distance between its first and last projections.  Losses are
    above H(q); ``val_*`` on the validation set at the first and last projection.
    """

    name: str
    epochs: int
    iters_per_epoch: int
    threshold: float
    projected_points: int
    inserted_points: int
    missed_projections: int
    segments: int
    unconnected_segments: int
    unconnected_missed: int
    unconnected_adjacent: int
    unconnected_depth: int
    max_depth_reached: int
    valley_start: float
    valley_share: float
    max_segment_excess_loss: float
    barrier: float
    distance: float
    sgd_distance: float
    end_to_end: float
    gd_steps_median: float
    gd_steps_max: int
    gd_steps_total: int
    sgd_final_excess: float
    sgd_min_excess: float
    sgd_below_threshold: float
    sgd_first_below: float
    moved_median: float
    val_start: float
    val_end: float
    val_min: float
    seconds_per_epoch: float
    seconds_per_projection: float
    seconds_per_gd_step: float

    @property
    def all_connected(self) -> bool:
        """Every projection reached the threshold and every segment is line-connected."""
        return self.missed_projections == 0 and self.unconnected_segments == 0

    @property
    def valley_by_descent(self) -> bool:
        """Fig. 1's claim at this scale: a connected valley exists and begins no later than the
        epoch at which SGD's own loss first falls below the threshold, so that the path is
        disconnected only while SGD descends ("the first few epochs")."""
        return (not math.isnan(self.valley_start) and not math.isnan(self.sgd_first_below)
                and self.valley_start <= self.sgd_first_below)  # fmt: skip


def _valley_start(run: PathRun) -> float:
    """The first epoch e such that every projection at iteration e·n or later reached the
    threshold and every segment starting there or later is line-connected (n iterations per
    epoch); ``nan`` when no segment qualifies."""
    ipe = run.ipe
    bad = [p.step for p in run.points.values() if not p.reached]
    bad += [s.a for s in run.segments if not s.connected]
    start = max((k // ipe + 1 for k in bad), default=0)
    return float(start) if start < run.cfg.epochs else math.nan


def summarize(run: PathRun) -> PathSummary:
    """The numbers of :class:`PathSummary` for one finished path."""
    cfg, ipe = run.cfg, run.ipe
    points = [run.points[k] for k in run.steps()]
    segs = run.segments
    unconnected = [s for s in segs if not s.connected]
    minima = {k for k, p in run.points.items() if p.reached}
    missed_end = [s for s in unconnected if s.a not in minima or s.b not in minima]
    adjacent = [s for s in unconnected if s.b - s.a <= 1 and s not in missed_end]
    depth_cut = [s for s in unconnected if s not in missed_end and s not in adjacent]
    between_minima = [s for s in segs if s.a in minima and s.b in minima]
    max_excess = max((s.train.max().item() for s in between_minima), default=math.nan)
    barrier = max((s.train.max().item() - max(s.train[0].item(), s.train[-1].item())
                   for s in between_minima), default=math.nan)  # fmt: skip
    epochs = [st.epoch for st in run.states]
    sgd_thetas = [st.theta for st in run.states]
    sgd_distance = sum((b - a).norm().item() for a, b in itertools.pairwise(sgd_thetas))
    train_ex = [st.train_excess for st in run.states[1:]]
    steps = [p.gd_steps for p in points]
    start = _valley_start(run)
    total_gd = sum(steps)
    proj_seconds = sum(p.seconds for p in points)
    return PathSummary(
        name=cfg.name, epochs=epochs[-1], iters_per_epoch=ipe, threshold=cfg.threshold,
        projected_points=len(points),
        inserted_points=sum(1 for p in points if p.step % ipe),
        missed_projections=sum(1 for p in points if not p.reached),
        segments=len(segs), unconnected_segments=len(unconnected),
        unconnected_missed=len(missed_end), unconnected_adjacent=len(adjacent),
        unconnected_depth=len(depth_cut), max_depth_reached=max(s.depth for s in segs),
        valley_start=start,
        valley_share=(cfg.epochs - start) / cfg.epochs if not math.isnan(start) else 0.0,
        max_segment_excess_loss=max_excess, barrier=barrier,
        distance=sum(s.length for s in segs), sgd_distance=sgd_distance,
        end_to_end=(points[-1].theta - points[0].theta).norm().item(),
        gd_steps_median=float(statistics.median(steps)), gd_steps_max=max(steps),
        gd_steps_total=total_gd, sgd_final_excess=run.states[-1].train_excess,
        sgd_min_excess=min(train_ex),
        sgd_below_threshold=sum(1 for v in train_ex if v < cfg.threshold) / len(train_ex),
        sgd_first_below=next((float(e) for e, v in enumerate(train_ex, 1) if v < cfg.threshold),
                             math.nan),
        moved_median=float(statistics.median(p.moved for p in points)),
        val_start=points[0].val_excess, val_end=points[-1].val_excess,
        val_min=min(p.val_excess for p in points),
        seconds_per_epoch=statistics.mean(st.seconds for st in run.states[1:]),
        seconds_per_projection=proj_seconds / len(points),
        seconds_per_gd_step=proj_seconds / total_gd if total_gd else math.nan,
    )  # fmt: skip


@dataclass(frozen=True)
class PathCurve:
    """Losses above H(q) along a projected path: at every point of every final segment
    (``epoch``, ``train``, ``val``, each ``(n,)``), and at the projected points themselves
    (``point_epoch``, ``point_train``, ``point_val``, ``point_reached``); epochs are fractional
    (iteration / iterations per epoch)."""

    epoch: np.ndarray
    train: np.ndarray
    val: np.ndarray
    point_epoch: np.ndarray
    point_train: np.ndarray
    point_val: np.ndarray
    point_reached: np.ndarray


def path_curve(run: PathRun) -> PathCurve:
    """The main plot of Fig. 1 as arrays: each segment's :data:`N_POINTS` points in order
    (a shared endpoint appears at the end of one segment and the start of the next)."""
    t = np.linspace(0.0, 1.0, N_POINTS)
    ep = np.concatenate([(s.a + t * (s.b - s.a)) / run.ipe for s in run.segments])
    train = np.concatenate([s.train.numpy() for s in run.segments])
    val = np.concatenate([s.val.numpy() for s in run.segments])
    pts = [run.points[k] for k in run.steps()]
    return PathCurve(
        epoch=ep, train=train, val=val,
        point_epoch=np.array([p.step / run.ipe for p in pts]),
        point_train=np.array([p.excess for p in pts]),
        point_val=np.array([p.val_excess for p in pts]),
        point_reached=np.array([p.reached for p in pts]),
    )  # fmt: skip


def random_label_facts(rl: RandomLabelRun) -> dict[str, float]:
    """App. A.2.2's preparation in numbers: the share of B's labels the shuffle changed, the
    epochs SGD spent on A ∪ B, its loss on A ∪ B above H(q) and its accuracy there at the end,
    and the descent on A: its steps, its losses before and after, and the validation loss where
    it stopped."""
    d = rl.descent
    return {
        "changed": rl.data.changed, "pretrain_epochs": rl.pretrain[-1].epoch,
        "pretrain_excess": rl.pretrain[-1].train_excess, "pretrain_accuracy": rl.pretrain_accuracy,
        "pretrain_converged": rl.pretrain[-1].train_excess < rl.rcfg.path.threshold,
        "descent_steps": d.gd_steps,
        "descent_start": d.start_excess, "descent_excess": d.excess, "descent_val": d.val_excess,
    }  # fmt: skip


@dataclass(frozen=True)
class RefinementLevel:
    """The segments tested at one refinement depth between two minima: how many, how many
    were line-connected, their mean length and their largest rise above the higher endpoint
    (the chord proposition bounds it by m₋|d|²/8)."""

    depth: int
    tested: int
    connected: int
    mean_length: float
    max_rise: float


def refinement_levels(run: PathRun) -> list[RefinementLevel]:
    """:class:`RefinementLevel` per depth, over every tested segment between two minima."""
    minima = {k for k, p in run.points.items() if p.reached}
    out = []
    for depth in sorted({s.depth for s in run.tested}):
        segs = [s for s in run.tested if s.depth == depth and s.a in minima and s.b in minima]
        if not segs:
            continue
        rises = [s.train.max().item() - max(s.train[0].item(), s.train[-1].item()) for s in segs]
        mean_length = statistics.mean(s.length for s in segs)
        out.append(RefinementLevel(depth, len(segs), sum(s.connected for s in segs),
                                   mean_length, max(rises)))  # fmt: skip
    return out


def headline_metrics(s: PathSummary) -> dict[str, float]:
    """The numbers the claims table reads for Fig. 1: projected points, segments still
    unconnected, the largest loss on a segment between minima."""
    return {"projected_points": s.projected_points, "unconnected_segments": s.unconnected_segments,
            "max_segment_excess_loss": s.max_segment_excess_loss}  # fmt: skip


def threshold_facts(cfg: PathConfig) -> dict[str, float]:
    """The threshold and the scale it is measured against: δ, the floor H(q), ε, K, the loss
    scale log K − H(q) (from an uninformed network to the floor), δ as a share of it, and the
    refinement's depth and the largest spacing, in iterations, it leaves between states, and δ
    over the paper's 0.005."""
    h = target_entropy(cfg.eps, cfg.n_classes)
    scale = math.log(cfg.n_classes) - h
    ipe = cfg.iters_per_epoch
    depth = cfg.max_depth if cfg.max_depth is not None else max(0, math.ceil(math.log2(ipe)))
    return {
        "threshold": cfg.threshold, "entropy": h, "eps": cfg.eps, "n_classes": cfg.n_classes,
        "loss_scale": scale, "threshold_share": cfg.threshold / scale, "refine_depth": depth,
        "refine_spacing": math.ceil(ipe / 2**depth), "refine_full_cost": ipe - 1,
        "threshold_vs_paper": cfg.threshold / PAPER_THRESHOLD,
    }  # fmt: skip


def budget_respected(run: PathRun) -> bool:
    """Every projection either reached the threshold (its loss below it) or spent its whole
    budget without reaching it."""
    budget = run.cfg.max_steps
    return all((p.reached and p.excess < run.threshold)
               or (not p.reached and p.gd_steps == budget and p.excess >= run.threshold)
               for p in run.points.values())  # fmt: skip


def endpoint_mismatch(run: PathRun) -> float:
    """The largest difference between a segment's batched loss at an endpoint and the loss its
    projection computed on its own: a check of the batched evaluation, in nats."""
    gaps = [abs(s.train[0].item() - run.points[s.a].excess) for s in run.segments]
    gaps += [abs(s.train[-1].item() - run.points[s.b].excess) for s in run.segments]
    return max(gaps)


# --------------------------------------------------------------------------------------------
# The paper's runs: cost on this machine
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PaperCost:
    """The measured cost of one paper configuration on this machine and the hours a full run
    would take there.  ``seconds_per_image`` is one forward and backward pass per training
    image (measured on ``n_images`` images), ``forward_per_image`` a forward pass alone.
    ``epoch_hours`` is one SGD epoch over the training set, ``step_hours`` one full-batch
    gradient-descent step; ``run_hours`` is ``epochs`` SGD epochs plus ``points`` projections of
    ``steps_per_projection`` steps and their segments (:data:`N_POINTS` forward passes over
    the training and validation sets each).  ``disk_gb`` is what the checkpoints of a full run
    take: θ and the momentum buffer of every epoch and θ of every projection, in ``dtype``."""

    name: str
    model: str
    n_classes: int
    device: str
    params: int
    n_images: int
    seconds_per_image: float
    forward_per_image: float
    epoch_hours: float
    step_hours: float
    points: int
    steps_per_projection: float
    run_hours: float
    disk_gb: float


def _time(fn, repeats: int) -> float:
    fn()  # warm-up: allocations, kernel choice
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeats


def paper_costs(
    configs: list[PathConfig],
    steps_per_projection: float,
    device: torch.device | str = "cpu",
    n_images: int = 4,
    repeats: int = 1,
) -> list[PaperCost]:
    """Time one forward and backward pass of each configuration's network on ``n_images``
    random images on ``device`` and extrapolate to a full run: ``epochs`` epochs and, for the
    two networks of Fig. 1, the paper's projected-point counts (:data:`PAPER_POINTS`; one point
    per epoch otherwise), each projection taking ``steps_per_projection`` steps.  The
    extrapolation is linear in the number of images, which holds for these compute-bound
    networks once a batch fills the device."""
    out = []
    timed: dict[tuple[str, int], tuple[float, float, int]] = {}
    for cfg in configs:
        if (cfg.model, cfg.n_classes) not in timed:
            timed[cfg.model, cfg.n_classes] = _time_network(cfg, device, n_images, repeats)
        fb, fw, params = timed[cfg.model, cfg.n_classes]
        epoch_h = cfg.n_train * fb / 3600
        points = PAPER_POINTS.get(cfg.model, cfg.epochs + 1)
        seg_h = N_POINTS * (cfg.n_train + cfg.n_val) * fw / 3600
        run_h = cfg.epochs * epoch_h + points * (steps_per_projection * epoch_h + seg_h)
        size = torch.finfo(cfg.torch_dtype).bits // 8
        disk = ((cfg.epochs + 1) * 2 + points) * params * size / 1e9
        out.append(PaperCost(cfg.name, cfg.model, cfg.n_classes, str(device), params, n_images,
                             fb, fw, epoch_h, epoch_h, points, steps_per_projection, run_h,
                             disk))  # fmt: skip
    return out


def paper_counts_match(costs: list[PaperCost]) -> bool:
    """Whether each network built for the paper's runs has its published parameter count
    (:data:`hessnoise.models.PAPER_PARAM_COUNTS`)."""
    return all(c.params == models.PAPER_PARAM_COUNTS[c.model, c.n_classes] for c in costs)


def _time_network(
    cfg: PathConfig, device: torch.device | str, n_images: int, repeats: int
) -> tuple[float, float, int]:
    """Seconds per image of a forward and backward pass and of a forward pass, and the
    parameter count, of the configuration's network."""
    net = models.build(cfg.model, n_classes=cfg.n_classes, dtype=cfg.torch_dtype, device=device)
    shape = (n_images, 1, 28, 28) if cfg.model == "convnet4" else (n_images, 3, 32, 32)
    x = torch.randn(shape, dtype=cfg.torch_dtype, device=device)
    y = torch.arange(n_images, device=device) % cfg.n_classes

    def step() -> None:
        net.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(x), y).backward()

    def forward() -> None:
        with torch.no_grad():
            net(x)

    with threads("small"):  # one thread: stable on a shared machine, and what the runs use
        fb = _time(step, repeats) / n_images
        fw = _time(forward, repeats) / n_images
    return fb, fw, models.n_params(net)
