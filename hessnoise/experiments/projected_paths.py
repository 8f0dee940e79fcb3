r"""Projected paths: does SGD move inside one connected valley of minima? (Section 2.1.1, Fig. 1,
App. A.2, Fig. 4)

The paper's evidence for minimal valleys in real networks is a protocol, implemented here as
written:

* **Training.**  Label-smoothed cross-entropy, a constant learning rate η, heavy-ball momentum μ
  and a fixed batch size S (:func:`train`).  Every epoch's full SGD state (θ, the momentum
  buffer, the next epoch's data order and the generator) is saved, so that any iteration can
  be replayed bit for bit (:func:`sgd_state`).
* **Projection** of a state onto a minimum (:func:`project`): from it, full-batch gradient
  descent with the same η and μ (no noise; the velocity starts at zero, so the projection is a
  function of θ alone) until the training loss is below the threshold H(q) + δ, within a budget
  of steps.  A projection that misses the threshold is kept and reported, never accepted.
* **Line connectedness** of two projections (:func:`segment`): the loss at 10 evenly spaced
  points of the segment between them, endpoints included, evaluated in one batched call
  (``torch.vmap`` over the stacked parameters), all below the threshold.
* **Refinement** (:func:`refine`): from consecutive epochs A and B, n iterations apart, when
  their projections are not line-connected, insert C, the state n/2 iterations after A
  (replayed), and recurse until connected or adjacent.
* **Random labels** (App. A.2.2, :func:`random_label_path`): train on A ∪ B with B's labels
  shuffled, descend on A alone to a minimum, then run SGD on A from it and project that path.

The module is split along the data flow: :mod:`~hessnoise.experiments.path_problem` (data,
network, configuration of one path), :mod:`~hessnoise.experiments.path_protocol` (the steps
above, each cached), this module (the chapter's scales and whole runs: :func:`projected_path`,
:func:`random_label_path`, which the trace chapter reuses) and
:mod:`~hessnoise.experiments.path_analysis` (counts, barriers, distances, verdicts, costs: plain
numbers).  Everything is checkpointed under fingerprints of what it depends on: a run killed at
any point resumes to bit-identical results.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from hessnoise._validate import positive_int
from hessnoise.experiments.path_problem import (
    PathConfig,
    Problem,
    RandomLabelConfig,
    RandomLabelData,
    setup,
    setup_random_labels,
)
from hessnoise.experiments.path_protocol import (
    EpochState,
    Projection,
    Segment,
    cached_segment,
    project,
    refine,
    replay_matches,
    sgd_state,
    train,
)
from hessnoise.scales import by_scale
from hessnoise.threads import threads


@dataclass(frozen=True)
class ProjectedPathsConfig:
    """The chapter's runs: ``paths`` for Fig. 1 (and Fig. 4a at paper scale), ``random_labels``
    for Fig. 4b–c; ``cost_images`` images per timed batch when the cost of the paper's runs is
    estimated on the device (a few on a CPU; the paper's batch size at paper scale, for a
    GPU)."""

    paths: tuple[PathConfig, ...]
    random_labels: tuple[RandomLabelConfig, ...]
    cost_images: int = 4

    def __post_init__(self) -> None:
        for name in ("paths", "random_labels"):
            if not getattr(self, name):
                raise ValueError(f"{name}=() must hold at least one configuration")
        positive_int("cost_images", self.cost_images)

    @classmethod
    def for_scale(cls, scale: str) -> ProjectedPathsConfig:
        """``smoke``: a tiny network on 7×7 Fashion-MNIST.  ``small``: the chapter's network
        (:func:`small_path`) on 2,000 + 1,000 Fashion-MNIST images at 14×14.  ``paper``:
        PreAct-ResNet18 and VGG16 on CIFAR-10 and DenseNet-BC on CIFAR-100 (lr 0.1, momentum
        0.9, batch 500, 150 epochs), the 4-layer ConvNet on MNIST and PreAct-ResNet18 on
        CIFAR-10 with shuffled labels (A: 40,000 images)."""
        return by_scale(scale, smoke=_smoke(), small=_small(), paper=_paper())


def small_path(batch_norm: bool = True, **changes: Any) -> PathConfig:
    """The small scale's network and protocol: :func:`hessnoise.models.conv_net` (four weight
    layers, 36,730 parameters with BatchNorm) on 2,000 Fashion-MNIST training and 1,000
    validation images at 14×14; η = 0.2, μ = 0.9, S = 100 (20 iterations per epoch), 40 epochs;
    δ = 0.05 nats; projections of at most 100 steps; refinement to depth 2 (five iterations).
    The trace chapter runs it with and without BatchNorm; ``changes`` override fields."""
    cfg = PathConfig(
        name="conv-net" + (" + BN" if batch_norm else "") + ", Fashion-MNIST 14×14",
        dataset="fashion-mnist", model="conv-net", n_train=2000, n_val=1000, size=14,
        batch_norm=batch_norm, lr=0.2, batch_size=100, epochs=40, threshold=0.05,
        max_steps=100, max_depth=2,
    )  # fmt: skip
    return replace(cfg, **changes)


def _smoke() -> ProjectedPathsConfig:
    path = PathConfig(
        name="tiny conv-net + BN, Fashion-MNIST 7×7", dataset="fashion-mnist", model="conv-net",
        n_train=256, n_val=256, size=7, conv=(4, 8, 32), lr=0.2, batch_size=64, epochs=6,
        threshold=0.9, max_steps=30, max_depth=1,
    )  # fmt: skip
    rl = RandomLabelConfig(replace(path, epochs=4), n_shuffled=64, pretrain_epochs=10,
                           descent_steps=60)  # fmt: skip
    return ProjectedPathsConfig(paths=(path,), random_labels=(rl,), cost_images=2)


def _small() -> ProjectedPathsConfig:
    path = small_path()
    rl = RandomLabelConfig(
        replace(path, name=path.name + ", 20 % shuffled", epochs=20), n_shuffled=500,
        pretrain_epochs=60, descent_steps=400,
    )  # fmt: skip
    return ProjectedPathsConfig(paths=(path,), random_labels=(rl,))


def _paper() -> ProjectedPathsConfig:
    common = dict(lr=0.1, momentum=0.9, batch_size=500, epochs=150, threshold=0.005,
                  max_steps=2000, chunk=500, checkpoint_every=50, download=True)  # fmt: skip
    paths = (
        PathConfig(name="PreAct-ResNet18, CIFAR-10", dataset="cifar10", model="preact-resnet18",
                   n_train=50_000, n_val=10_000, **common),
        PathConfig(name="VGG16, CIFAR-10", dataset="cifar10", model="vgg16", n_train=50_000,
                   n_val=10_000, **common),
        PathConfig(name="DenseNet-BC (6, 12, 24, 16; k = 12), CIFAR-100", dataset="cifar100",
                   model="densenet-bc", n_train=50_000, n_val=10_000, **common),
    )  # fmt: skip
    rl = (
        RandomLabelConfig(
            PathConfig(name="4-layer ConvNet, MNIST", dataset="mnist", model="convnet4",
                       n_train=40_000, n_val=10_000, **common),
            n_shuffled=20_000, pretrain_epochs=500, descent_steps=5000,
        ),
        RandomLabelConfig(
            PathConfig(name="PreAct-ResNet18, CIFAR-10", dataset="cifar10",
                       model="preact-resnet18", n_train=40_000, n_val=10_000, **common),
            n_shuffled=10_000, pretrain_epochs=500, descent_steps=5000,
        ),
    )  # fmt: skip
    return ProjectedPathsConfig(paths=paths, random_labels=rl, cost_images=500)


# --------------------------------------------------------------------------------------------
# A whole path
# --------------------------------------------------------------------------------------------
@dataclass
class PathRun:
    """One projected path: the problem, its configuration, the SGD states at every epoch
    (``states[e]``), the projections by iteration, the final segments in order and every
    segment tested (``tested``, refined ones included).

    ``folder`` holds every checkpoint; :meth:`sgd_theta` replays any iteration and
    :meth:`projected_theta` returns a projection: what the trace chapter reads."""

    problem: Problem
    cfg: PathConfig
    states: list[EpochState]
    points: dict[int, Projection]
    segments: list[Segment]
    tested: list[Segment]
    folder: Path

    @property
    def threshold(self) -> float:
        return self.cfg.threshold

    @property
    def ipe(self) -> int:
        return self.cfg.iters_per_epoch

    def sgd_theta(self, step: int) -> Tensor:
        """θ of the SGD run after ``step`` iterations (replayed bit-identically), on the
        problem's device."""
        return sgd_state(self.problem, self.cfg, self.states, step)

    def replay_matches(self, epoch: int) -> bool:
        """Whether replaying epoch ``epoch`` from the checkpoint before it gives the saved state
        bit for bit."""
        return replay_matches(self.problem, self.cfg, self.states, epoch)

    def projected_theta(self, step: int) -> Tensor:
        """The projection of the SGD state at iteration ``step`` (on the CPU)."""
        return self.points[step].theta

    def steps(self) -> list[int]:
        """The iterations of the projected points, in order."""
        return sorted(self.points)


def run_path(
    problem: Problem,
    cfg: PathConfig,
    seed: int,
    folder: str | Path,
    *,
    theta0: Tensor | None = None,
    valley_only: bool = False,
) -> PathRun:
    """Train (or read back) the SGD run from ``theta0``, project every epoch, test and refine
    the segments; every step is cached under ``folder``.

    With ``valley_only`` the epochs are projected from the last one backwards, and the scan
    stops at the first projection that misses the threshold: the path then holds that missed
    projection and every later epoch's, all minima (the valley in the sense of
    :func:`valley_epochs`), and the segments between them.  The projections of the descent
    before it, which miss the threshold after spending their whole budget and are most of the
    cost of a path, are skipped.  Projections are cached under the same keys either way, so a
    full run's files serve a valley-only run and the other way round."""
    folder = Path(folder)
    states = train(problem, cfg, seed, folder, theta0=theta0)

    def project_at(k: int) -> Projection:
        return project(problem, cfg, sgd_state(problem, cfg, states, k), step=k,
                       path=folder / "proj" / f"step{k:07d}.pt")  # fmt: skip

    def evaluate(pa: Projection, pb: Projection) -> tuple[Tensor, Tensor, float]:
        path = folder / "seg" / f"{pa.step:07d}_{pb.step:07d}.pt"
        return cached_segment(problem, pa, pb, path)

    endpoints = [e * cfg.iters_per_epoch for e in range(cfg.epochs + 1)]
    if valley_only:
        endpoints = _valley_tail(endpoints, project_at)
    points, leaves, tested = refine(endpoints, project_at, evaluate, cfg.threshold, cfg.max_depth)
    for k in endpoints:  # a lone endpoint (the last epoch missed) has no segment to hold it
        points.setdefault(k, project_at(k))
    return PathRun(problem, cfg, states, points, leaves, tested, folder)


def _valley_tail(endpoints: list[int], project_at) -> list[int]:
    """The iterations from the last one whose projection missed the threshold (inclusive) to
    the end, found by projecting backwards from the end; all of them if none missed."""
    for i in range(len(endpoints) - 1, -1, -1):
        if not project_at(endpoints[i]).reached:
            return endpoints[i:]
    return endpoints


def valley_epochs(run: PathRun) -> list[int]:
    """The epochs from which on every epoch's projection reached the threshold, in order:
    the valley as projections alone see it (segments are not consulted)."""
    epochs = [k // run.ipe for k in run.steps() if k % run.ipe == 0]
    tail: list[int] = []
    for e in reversed(epochs):
        if not run.points[e * run.ipe].reached:
            break
        tail.append(e)
    return tail[::-1]


def checkpoint_name(cfg: PathConfig, kind: str = "path") -> str:
    """The experiment name under which a chapter keeps the checkpoints of ``cfg``'s runs
    (:meth:`hessnoise.report.Chapter.checkpoints`): one folder per network, data set and kind
    (``'path'`` or ``'random-labels'``), so that chapters sharing a run share its files."""
    slug = f"{cfg.model}{'-bn' if cfg.batch_norm and cfg.model == 'conv-net' else ''}"
    return f"projected_paths/{kind}-{slug}-{cfg.dataset}"


def projected_path(
    cfg: PathConfig,
    seed: int,
    device: torch.device | str,
    folder: str | Path,
    *,
    valley_only: bool = False,
) -> PathRun:
    """Fig. 1's protocol for one configuration and seed: data, network, SGD, projections and
    refinement, all read back from ``folder`` when they are there (``valley_only``: see
    :func:`run_path`)."""
    return run_path(setup(cfg, seed, device), cfg, seed, folder, valley_only=valley_only)


@dataclass
class RandomLabelRun:
    """App. A.2.2 for one configuration: the data, the SGD run on A ∪ B (``pretrain``, epoch
    states), the descent on A to a minimum (``descent``) and the projected SGD path on A from
    it (``path``)."""

    data: RandomLabelData
    rcfg: RandomLabelConfig
    pretrain: list[EpochState]
    descent: Projection
    path: PathRun
    pretrain_accuracy: float


def random_label_path(
    rcfg: RandomLabelConfig, seed: int, device: torch.device | str, folder: str | Path
) -> RandomLabelRun:
    """Train on A ∪ B (B's labels shuffled) until a minimum of A ∪ B or ``pretrain_epochs``;
    descend on A alone to a minimum; run SGD on A from there and project that path."""
    folder = Path(folder)
    cfg = rcfg.path
    rl = setup_random_labels(rcfg, seed, device)
    pre = train(rl.mixed, cfg, seed, folder / "pretrain", epochs=rcfg.pretrain_epochs,
                stop_below=cfg.threshold)  # fmt: skip
    trained = pre[-1].theta.to(rl.mixed.device)
    with threads("small"):
        accuracy = rl.mixed.accuracy(trained)
    descent = project(rl.clean, cfg, trained, max_steps=rcfg.descent_steps,
                      path=folder / "descent.pt")  # fmt: skip
    run = run_path(rl.clean, cfg, seed, folder / "path", theta0=descent.theta)
    return RandomLabelRun(rl, rcfg, pre, descent, run, accuracy)
