"""The projected-path protocol (Section 2.1.1, Fig. 1, App. A.2, Fig. 4) against independent
references: hand-written SGD and gradient-descent loops, per-point losses, a refinement case
whose answer is known, the random-label split, and a run killed with SIGKILL that resumes to
the same bits."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from hessnoise import data, models
from hessnoise.experiments import path_analysis as pa
from hessnoise.experiments import path_problem as ppb
from hessnoise.experiments import path_protocol as proto
from hessnoise.experiments import projected_paths as pp
from hessnoise.losses import cross_entropy
from hessnoise.scales import SCALES

F64 = torch.float64
ROOT = Path(__file__).resolve().parents[2]

# A tiny network on synthetic 6×6 images: 64 training and 32 validation images, 4 iterations
# per epoch; float64 so that references agree to rounding.
TINY = ppb.PathConfig(
    name="tiny", dataset="fashion-mnist", model="conv-net", n_train=64, n_val=32,
    conv=(3, 4, 16), lr=0.2, batch_size=16, epochs=3, threshold=0.6, max_steps=60,
    dtype="float64",
)  # fmt: skip


def tiny_problem(cfg: ppb.PathConfig) -> ppb.Problem:
    return ppb.synthetic(cfg, side=6)


def test_configs_exist_for_every_scale():
    for scale in SCALES:
        cfg = pp.ProjectedPathsConfig.for_scale(scale)
        assert cfg.paths and cfg.random_labels
    small = pp.ProjectedPathsConfig.for_scale("small")
    path = small.paths[0]
    assert path.dataset == "fashion-mnist" and path.n_train >= 2000 and path.n_val >= 1000
    assert path.model == "conv-net" and path.epochs + 1 >= 30  # at least 30 projected points
    assert models.n_params(models.conv_net(side=path.size)) == 36_730
    assert pp.small_path(batch_norm=False).batch_norm is False


def test_paper_scale_is_the_papers_protocol():
    cfg = pp.ProjectedPathsConfig.for_scale("paper")
    runs = {(c.model, c.dataset) for c in cfg.paths}
    assert runs == {("preact-resnet18", "cifar10"), ("vgg16", "cifar10"),
                    ("densenet-bc", "cifar100")}  # fmt: skip
    for c in (*cfg.paths, *(r.path for r in cfg.random_labels)):
        assert (c.lr, c.momentum, c.batch_size, c.epochs) == (0.1, 0.9, 500, 150)
        assert c.max_depth is None and c.threshold == 0.005
    rl = {(r.path.model, r.path.dataset): r for r in cfg.random_labels}
    assert set(rl) == {("convnet4", "mnist"), ("preact-resnet18", "cifar10")}
    assert all(r.path.n_train == 40_000 for r in rl.values())  # App. A.2.2: |A| = 40,000
    assert rl["convnet4", "mnist"].n_shuffled == 20_000  # the rest of MNIST's 60,000
    assert rl["preact-resnet18", "cifar10"].n_shuffled == 10_000  # the rest of CIFAR-10's


@pytest.mark.parametrize(
    ("change", "match"),
    [({"dataset": "svhn"}, "dataset='svhn'"), ({"model": "resnet50"}, "model='resnet50'"),
     ({"threshold": 0.0}, "threshold=0.0"), ({"batch_size": 100}, "batch_size=100"),
     ({"chunk": 48}, "chunk=48 must divide n_train=64"), ({"momentum": 1.0}, "momentum=1.0"),
     ({"dtype": "float16"}, "dtype='float16'"), ({"max_depth": -1}, "max_depth=-1"),
     ({"model": "vgg16"}, "model='vgg16' takes 32×32 CIFAR"),
     ({"model": "convnet4", "size": 14}, "model='convnet4' takes 28×28")],
)  # fmt: skip
def test_config_refuses_bad_values_naming_them(change, match):
    with pytest.raises(ValueError, match=match):
        replace(TINY, **change)


def test_paper_data_missing_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HESSNOISE_DATA", str(tmp_path))
    cfg = pp.ProjectedPathsConfig.for_scale("paper")
    with pytest.raises(data.DataMissing, match="cifar10"):
        ppb.setup(replace(cfg.paths[0], download=False), 0, "cpu")

    def offline(*args, download=False, **kw):  # what torchvision does without internet
        if download:
            raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")
        raise data.DataMissing("cifar100 not found")

    monkeypatch.setattr(data, "load", offline)
    with pytest.raises(data.DataMissing, match="could not be downloaded"):
        ppb.setup(cfg.paths[2], 0, "cpu")


# --------------------------------------------------------------------------------------------
# The loss as a fixed function of θ
# --------------------------------------------------------------------------------------------
def test_chunked_loss_and_gradient_are_the_mean_over_chunks_with_batchnorm_per_chunk():
    problem = tiny_problem(replace(TINY, chunk=16))
    theta = problem.theta_init

    def reference(th):  # each chunk normalized with its own statistics, then averaged
        chunks = zip(problem.x.split(16), problem.q.split(16), strict=True)
        return sum(cross_entropy(problem.net(th, xc), qc) for xc, qc in chunks) / 4

    value, grad = problem.loss_and_grad(theta)
    assert value == pytest.approx(reference(theta).item(), rel=1e-13)
    torch.testing.assert_close(grad, torch.func.grad(reference)(theta), rtol=1e-12, atol=1e-14)
    # BatchNorm per chunk is a different function from BatchNorm over the whole set
    whole = tiny_problem(TINY)
    assert abs(whole.loss_and_grad(theta)[0] - value) > 1e-6


def test_batched_segment_losses_equal_per_point_losses():
    problem = tiny_problem(replace(TINY, chunk=32))
    gen = torch.Generator().manual_seed(1)
    a = problem.theta_init
    b = a + 0.3 * torch.randn(a.shape, generator=gen, dtype=F64)
    train_l, val_l, length = proto.segment(problem, a, b)
    for j, t in enumerate(torch.linspace(0, 1, proto.N_POINTS, dtype=F64)):
        th = a + t * (b - a)
        chunks = zip(problem.x.split(32), problem.q.split(32), strict=True)
        ref_train = sum(cross_entropy(problem.net(th, xc), qc) for xc, qc in chunks) / 2
        ref_val = cross_entropy(problem.net(th, problem.x_val), problem.q_val)
        # float64 and the same arithmetic, batched: agreement to rounding
        assert train_l[j].item() == pytest.approx(ref_train.item() - problem.entropy, abs=1e-12)
        assert val_l[j].item() == pytest.approx(ref_val.item() - problem.entropy, abs=1e-12)
    assert length == pytest.approx((b - a).norm().item())


# --------------------------------------------------------------------------------------------
# SGD, replay and projection
# --------------------------------------------------------------------------------------------
def hand_written_sgd(problem, cfg, seed, steps):
    """Mini-batch SGD with momentum written out: a fresh permutation from one seeded CPU
    generator at the start of every epoch, batches in its order."""
    gen = torch.Generator().manual_seed(seed)
    theta, v = problem.theta_init.clone(), torch.zeros_like(problem.theta_init)
    out = [theta]
    order = torch.randperm(problem.n_samples, generator=gen)
    for k in range(steps):
        i = k % cfg.iters_per_epoch
        if k and i == 0:
            order = torch.randperm(problem.n_samples, generator=gen)
        idx = order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
        xb, qb = problem.x[idx], problem.q[idx]
        g = torch.func.grad(lambda th, xb=xb, qb=qb: cross_entropy(problem.net(th, xb), qb))(theta)
        v = cfg.momentum * v + g
        theta = theta - cfg.lr * v
        out.append(theta)
    return out


def test_sgd_and_its_replay_match_a_hand_written_loop(tmp_path):
    problem = tiny_problem(TINY)
    states = proto.train(problem, TINY, 7, tmp_path)
    ref = hand_written_sgd(problem, TINY, 7, TINY.epochs * TINY.iters_per_epoch)
    assert [st.epoch for st in states] == list(range(TINY.epochs + 1))
    for k, theta in enumerate(ref):
        # two implementations of the same float64 arithmetic: equal to rounding
        torch.testing.assert_close(proto.sgd_state(problem, TINY, states, k), theta,
                                   rtol=1e-12, atol=1e-13)  # fmt: skip


def test_replay_is_bit_identical_to_the_original_run(tmp_path):
    problem = tiny_problem(TINY)
    states = proto.train(problem, TINY, 3, tmp_path)
    # the original run passed through every iteration: rerun it step by step
    st = states[1]
    theta, v = st.theta, st.velocity
    for i in range(TINY.iters_per_epoch):
        replayed = proto.sgd_state(problem, TINY, states, TINY.iters_per_epoch + i)
        assert torch.equal(replayed, theta)
        theta, v = proto.sgd_steps(problem, TINY, theta, v, st.order, i, i + 1)
    assert torch.equal(theta, states[2].theta) and torch.equal(v, states[2].velocity)
    # read back from disk, the states are the same bits
    again = proto.train(problem, TINY, 3, tmp_path)
    assert all(torch.equal(a.theta, b.theta) and torch.equal(a.order, b.order)
               for a, b in zip(states, again, strict=True))  # fmt: skip


def test_projection_is_gradient_descent_until_the_threshold(tmp_path):
    problem = tiny_problem(TINY)
    proj = proto.project(problem, TINY, problem.theta_init, path=tmp_path / "p.pt")
    assert proj.reached and proj.excess < TINY.threshold and 0 < proj.gd_steps < TINY.max_steps
    # independent reference: plain heavy-ball gradient descent, stopped at the first point
    # whose full-batch loss is below H(q) + δ
    theta, v = problem.theta_init.clone(), torch.zeros_like(problem.theta_init)
    loss = lambda th: cross_entropy(problem.net(th, problem.x), problem.q)  # noqa: E731
    k = 0
    while loss(theta).item() - problem.entropy >= TINY.threshold:
        v = TINY.momentum * v + torch.func.grad(loss)(theta)
        theta, k = theta - TINY.lr * v, k + 1
    assert k == proj.gd_steps
    torch.testing.assert_close(proj.theta, theta, rtol=1e-10, atol=1e-12)
    assert proj.val_excess == pytest.approx(problem.excess(theta, val=True), rel=1e-10)
    assert proj.start_excess == pytest.approx(problem.excess(problem.theta_init), rel=1e-12)
    # cached: read back, not recomputed
    again = proto.project(problem, TINY, problem.theta_init, path=tmp_path / "p.pt")
    assert torch.equal(again.theta, proj.theta) and again.seconds == proj.seconds


def test_a_projection_that_misses_its_budget_is_reported():
    problem = tiny_problem(TINY)
    proj = proto.project(problem, TINY, problem.theta_init, max_steps=3)
    assert not proj.reached and proj.gd_steps == 3 and proj.excess >= TINY.threshold


def test_a_killed_projection_resumes_from_its_checkpoint_to_the_same_bits(tmp_path, monkeypatch):
    cfg = replace(TINY, checkpoint_every=5)
    problem = tiny_problem(cfg)
    whole = proto.project(problem, cfg, problem.theta_init, path=tmp_path / "whole.pt")
    calls = {"n": 0}
    original = ppb.Problem.loss_and_grad

    def dies_after_12(self, theta):
        calls["n"] += 1
        if calls["n"] > 12:
            raise KeyboardInterrupt
        return original(self, theta)

    monkeypatch.setattr(ppb.Problem, "loss_and_grad", dies_after_12)
    with pytest.raises(KeyboardInterrupt):
        proto.project(problem, cfg, problem.theta_init, path=tmp_path / "killed.pt")
    monkeypatch.setattr(ppb.Problem, "loss_and_grad", original)
    saved = torch.load(tmp_path / "killed.pt", weights_only=True)
    assert not saved["done"] and saved["k"] == 10  # the last checkpoint before the kill
    resumed = proto.project(problem, cfg, problem.theta_init, path=tmp_path / "killed.pt")
    assert torch.equal(resumed.theta, whole.theta) and resumed.gd_steps == whole.gd_steps


# --------------------------------------------------------------------------------------------
# Refinement
# --------------------------------------------------------------------------------------------
def fake_projection(k: int, reached: bool = True) -> proto.Projection:
    return proto.Projection(k, torch.tensor([float(k)]), 0.0, 0.0, 0, reached, 0.0)


def test_refinement_inserts_midpoints_until_connected_or_adjacent():
    # Barriers sit between iterations 5|6 and 13|14: a segment is connected iff it does not
    # straddle one; projections at 12 miss the threshold.  Worked by hand from endpoints
    # 0, 8, 16: [0,8] → [0,4] ok, [4,8] → [4,6] → [4,5] ok, [5,6] adjacent (unconnected),
    # [6,8] ok; [8,16] → [8,12] has a missed end (kept), [12,16] missed end (kept).
    barriers = (5.5, 13.5)
    missed = {12}
    projected = []

    def project_at(k):
        projected.append(k)
        return fake_projection(k, k not in missed)

    def evaluate(pa_, pb_):
        a, b = int(pa_.theta.item()), int(pb_.theta.item())
        bump = any(a < x < b for x in barriers)
        ends = [0.0 if pa_.reached else 2.0, 0.0 if pb_.reached else 2.0]
        train_l = torch.tensor([ends[0]] + [2.0 if bump else 0.0] * 8 + [ends[1]], dtype=F64)
        return train_l, torch.zeros(10, dtype=F64), float(b - a)

    points, leaves, tested = proto.refine([0, 8, 16], project_at, evaluate, threshold=1.0)
    assert [(s.a, s.b) for s in leaves] == [(0, 4), (4, 5), (5, 6), (6, 8), (8, 12), (12, 16)]
    assert [s.connected for s in leaves] == [True, True, False, True, False, False]
    assert [s.depth for s in leaves] == [1, 3, 3, 2, 1, 1]
    assert sorted(points) == [0, 4, 5, 6, 8, 12, 16] and len(projected) == len(set(projected))
    # every segment tested: the leaves and the four that were halved
    assert sorted((s.a, s.b) for s in tested) == sorted(
        [(s.a, s.b) for s in leaves] + [(0, 8), (4, 8), (4, 6), (8, 16)]
    )
    # a depth limit stops the recursion early
    _, shallow, _ = proto.refine([0, 8, 16], project_at, evaluate, threshold=1.0, max_depth=1)
    assert [(s.a, s.b) for s in shallow] == [(0, 4), (4, 8), (8, 12), (12, 16)]


def test_summary_counts_on_a_known_path():
    # the refinement case above, dressed as a run: 8 iterations per epoch, 2 epochs
    run = SimpleNamespace(
        ipe=8, threshold=1.0, cfg=replace(TINY, name="fake", batch_size=8, epochs=2, threshold=1.0)
    )
    run.points = {k: fake_projection(k, k != 12) for k in (0, 4, 5, 6, 8, 12, 16)}
    tr = lambda v: torch.full((10,), v, dtype=F64)  # noqa: E731
    run.segments = [
        proto.Segment(a, b, tr(2.0 if not c else 0.5), tr(0.1), float(b - a), c, d)
        for a, b, c, d in [
            (0, 4, True, 1),
            (4, 5, True, 3),
            (5, 6, False, 3),
            (6, 8, True, 2),
            (8, 12, False, 1),
            (12, 16, False, 1),
        ]
    ]
    # every point reached but 12; the last bad segment starts at 12 (epoch 1): no valley
    assert math.isnan(pa._valley_start(run))
    run.points[12] = fake_projection(12)
    run.segments[-2:] = [proto.Segment(8, 12, tr(0.5), tr(0.1), 4.0, True, 1),
                         proto.Segment(12, 16, tr(0.5), tr(0.1), 4.0, True, 1)]  # fmt: skip
    assert pa._valley_start(run) == 1.0  # the segment [5, 6] in epoch 0 is the last bad one


# --------------------------------------------------------------------------------------------
# Random labels
# --------------------------------------------------------------------------------------------
def test_random_label_split_keeps_a_and_shuffles_b():
    path = replace(pp.ProjectedPathsConfig.for_scale("smoke").paths[0], n_train=40, n_val=20,
                   batch_size=10)  # fmt: skip
    rcfg = ppb.RandomLabelConfig(path, n_shuffled=30, pretrain_epochs=2, descent_steps=5)
    rl = ppb.setup_random_labels(rcfg, 3, "cpu")
    _, y = data.load("fashion-mnist", 70, size=path.size, seed=3)
    a, b = rl.clean, rl.mixed
    assert (a.n_samples, b.n_samples) == (40, 70)
    assert torch.equal(a.y, y[:40]) and torch.equal(b.y[:40], y[:40])  # A keeps its labels
    assert sorted(b.y[40:].tolist()) == sorted(y[40:].tolist())  # B: a permutation of its own
    assert rl.changed == pytest.approx((b.y[40:] != y[40:]).double().mean().item())
    assert rl.changed > 0.5  # 30 labels over 10 classes: most move
    assert torch.equal(a.x, b.x[:40]) and torch.equal(a.theta_init, b.theta_init)
    assert torch.equal(a.x_val, b.x_val) and torch.equal(a.q, b.q[:40])
    # one standardization for both: the mixed set's per-channel statistics
    assert b.x.mean().abs().item() < 1e-6 and b.x.std().item() == pytest.approx(1.0, rel=1e-5)


# --------------------------------------------------------------------------------------------
# Whole runs
# --------------------------------------------------------------------------------------------
KILL_SCRIPT = textwrap.dedent("""
    import sys
    from dataclasses import replace
    from hessnoise.experiments import path_problem as ppb
    from hessnoise.experiments import projected_paths as pp
    cfg = replace(ppb.PathConfig(
        name="tiny", dataset="fashion-mnist", model="conv-net", n_train=64, n_val=32,
        conv=(3, 4, 16), lr=0.2, batch_size=16, epochs=3, threshold=0.6, max_steps=60,
        dtype="float64"), epochs=int(sys.argv[2]), threshold=float(sys.argv[3]),
        checkpoint_every=3)
    pp.run_path(ppb.synthetic(cfg, side=6), cfg, 0, sys.argv[1])
""")


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*.pt") if not p.name.startswith(".")}


def _kill_when(folder: Path, pattern: str, args: list[str]) -> tuple[int, set[Path]]:
    """Start the tiny run in a subprocess, SIGKILL it as soon as ``pattern`` exists under
    ``folder``, and return its exit status and the checkpoint files it left."""
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(folder), *args],
                            env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    deadline = time.time() + 120
    while not list(folder.glob(pattern)) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # a no-op if it has already exited
    return proc.wait(), _files(folder)


@pytest.mark.slow
@pytest.mark.parametrize("pattern", ["sgd/epoch0002.pt", "proj/*.pt", "seg/*.pt"])
def test_a_run_killed_with_sigkill_resumes_to_identical_results(tmp_path, pattern):
    epochs, threshold = 6, 0.45
    cfg = replace(TINY, epochs=epochs, threshold=threshold, checkpoint_every=3)
    status, left = _kill_when(tmp_path / "killed", pattern, [str(epochs), str(threshold)])
    assert status == -signal.SIGKILL  # killed, not crashed or finished
    assert list((tmp_path / "killed").glob(pattern))  # it died after writing, not before
    problem = tiny_problem(cfg)
    resumed = pp.run_path(problem, cfg, 0, tmp_path / "killed")
    assert left < _files(tmp_path / "killed")  # it died before finishing: the rerun added files
    fresh = pp.run_path(problem, cfg, 0, tmp_path / "fresh")
    assert sorted(resumed.points) == sorted(fresh.points)
    for k in fresh.points:
        assert torch.equal(resumed.points[k].theta, fresh.points[k].theta)
        assert resumed.points[k].gd_steps == fresh.points[k].gd_steps
    assert [(s.a, s.b) for s in resumed.segments] == [(s.a, s.b) for s in fresh.segments]
    for r, f in zip(resumed.segments, fresh.segments, strict=True):
        assert torch.equal(r.train, f.train) and torch.equal(r.val, f.val)
    for r, f in zip(resumed.states, fresh.states, strict=True):
        assert torch.equal(r.theta, f.theta) and torch.equal(r.velocity, f.velocity)


@pytest.mark.slow
def test_smoke_chapter_runs_end_to_end(tmp_path):
    cfg = pp.ProjectedPathsConfig.for_scale("smoke")
    run = pp.projected_path(cfg.paths[0], 0, "cpu", tmp_path / "main")
    s = pa.summarize(run)
    assert s.projected_points == len(run.points) >= cfg.paths[0].epochs + 1
    assert s.segments == len(run.segments) and s.distance >= s.end_to_end
    rl = pp.random_label_path(cfg.random_labels[0], 0, "cpu", tmp_path / "rl")
    assert rl.path.points[0].gd_steps == 0 or not rl.descent.reached  # starts at the minimum
    assert torch.equal(rl.path.states[0].theta, rl.descent.theta)


def test_refinement_levels_and_threshold_facts():
    run = SimpleNamespace(points={k: fake_projection(k, k != 12) for k in (0, 4, 8, 12)})
    # the rise above the higher endpoint: a bump of 0.3 over ends 0.1 and 0.2 at depth 0
    bump = torch.tensor([0.1] + [0.5] * 8 + [0.2], dtype=F64)
    flat = torch.full((10,), 0.1, dtype=F64)
    run.tested = [
        proto.Segment(0, 8, bump, flat, 2.0, False, 0),
        proto.Segment(0, 4, flat, flat, 1.0, True, 1),
        proto.Segment(4, 8, flat, flat, 3.0, True, 1),
        proto.Segment(8, 12, bump, flat, 9.0, False, 1),
    ]  # missed end: left out
    levels = pa.refinement_levels(run)
    assert [(lv.depth, lv.tested, lv.connected) for lv in levels] == [(0, 1, 0), (1, 2, 2)]
    assert levels[0].max_rise == pytest.approx(0.3) and levels[1].mean_length == 2.0
    facts = pa.threshold_facts(pp.small_path())
    assert facts["loss_scale"] == pytest.approx(math.log(10) - facts["entropy"])
    assert facts["threshold_share"] == pytest.approx(0.05 / facts["loss_scale"])
    # 20 iterations per epoch: depth 2 leaves states 5 apart; the paper's rule needs depth 5
    assert (facts["refine_depth"], facts["refine_spacing"], facts["refine_full_cost"]) == (2, 5, 19)
    full = pa.threshold_facts(pp.small_path(max_depth=None))
    assert (full["refine_depth"], full["refine_spacing"]) == (5, 1)


def test_budget_and_endpoint_checks_see_violations():
    run = SimpleNamespace(threshold=1.0, cfg=replace(TINY, max_steps=5, threshold=1.0))
    good = {0: proto.Projection(0, torch.zeros(1), 0.5, 0.0, 3, True, 2.0),
            8: proto.Projection(8, torch.ones(1), 1.5, 0.0, 5, False, 2.0)}  # fmt: skip
    run.points = good
    run.segments = [proto.Segment(0, 8, torch.linspace(0.5, 1.5, 10, dtype=F64),
                                  torch.zeros(10, dtype=F64), 1.0, False)]  # fmt: skip
    assert pa.budget_respected(run) and pa.endpoint_mismatch(run) == pytest.approx(0.0)
    run.points = {**good, 8: proto.Projection(8, torch.ones(1), 1.5, 0.0, 4, False, 2.0)}
    assert not pa.budget_respected(run)  # stopped early without reaching δ
    run.points = {**good, 0: proto.Projection(0, torch.zeros(1), 0.4, 0.0, 3, True, 2.0)}
    assert pa.endpoint_mismatch(run) == pytest.approx(0.1)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["preact-resnet18", "convnet4"])
def test_paper_networks_run_through_the_protocol(tmp_path, model):
    # the paper's configuration, shrunk to 8 random images in chunks of 4 (BatchNorm per chunk)
    paper = pp.ProjectedPathsConfig.for_scale("paper")
    base = paper.paths[0] if model == "preact-resnet18" else paper.random_labels[0].path
    cfg = replace(base, n_train=8, n_val=4, batch_size=4, chunk=4, epochs=1, max_steps=2,
                  checkpoint_every=1)  # fmt: skip
    problem = ppb.synthetic(cfg)
    run = pp.run_path(problem, cfg, 0, tmp_path)
    assert sorted(run.points) == [0, 2] and all(p.gd_steps <= 2 for p in run.points.values())
    seg = run.segments[0]
    # the batched evaluation at the endpoints is the loss each projection computed
    assert seg.train[0].item() == pytest.approx(run.points[0].excess, abs=1e-5)
    assert seg.train[-1].item() == pytest.approx(run.points[2].excess, abs=1e-5)
    assert run.replay_matches(1)
