"""The trace along projected paths (Section 4.3, Fig. 3) against independent references: the
Hessian of the path's loss written out by hand and differentiated by
``torch.autograd.functional.hessian``, block traces of that dense matrix, slopes and intervals
from numpy and scipy on series with known trends, and runs that must not recompute what their
checkpoints hold."""

from __future__ import annotations

import math
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy import stats

from hessnoise.curvature import HessianOperator, hutchpp_groups
from hessnoise.experiments import path_curvature as pc
from hessnoise.experiments import path_problem as ppb
from hessnoise.experiments import path_protocol as proto
from hessnoise.experiments import projected_paths as pp
from hessnoise.experiments import trace_along_path as tap
from hessnoise.experiments import trace_analysis as ta
from hessnoise.losses import cross_entropy
from hessnoise.scale_invariance import partition
from hessnoise.scales import SCALES

F64 = torch.float64
# A tiny network with BatchNorm on synthetic 6×6 images, in float64, with two BatchNorm chunks
# per set (so that the Hessian must keep each chunk's statistics apart).  With δ = 1.25 nats
# and 6 descent steps its projections miss δ for epochs 0–3 and reach it from epoch 4 on, two
# of them by descent (θ moves) and the others at the SGD state itself.
TINY = ppb.PathConfig(
    name="tiny",
    dataset="fashion-mnist",
    model="conv-net",
    n_train=64,
    n_val=32,
    conv=(3, 4, 16),
    lr=0.2,
    batch_size=16,
    epochs=8,
    threshold=1.25,
    max_steps=6,
    max_depth=0,
    chunk=32,
    dtype="float64",
)
TCFG = tap.TraceConfig(paths=(TINY,), seeds=1, budget=12, lanczos_steps=5, points=4)


def tiny_problem(cfg: ppb.PathConfig = TINY) -> ppb.Problem:
    return ppb.synthetic(cfg, side=6)


def path_loss(problem: ppb.Problem, theta: torch.Tensor) -> torch.Tensor:
    """The path's training loss, written out: the mean over chunks of each chunk's mean
    cross-entropy, BatchNorm with the chunk's own statistics."""
    xs, qs = problem.x.split(problem.chunk), problem.q.split(problem.chunk)
    return sum(cross_entropy(problem.net(theta, x), q) for x, q in zip(xs, qs, strict=True)) / len(
        xs
    )


def test_path_hessian_is_the_dense_hessian_of_the_path_loss():
    problem = tiny_problem()
    theta = problem.theta_init + 0.1 * torch.randn(
        problem.theta_init.numel(), dtype=F64, generator=torch.Generator().manual_seed(1)
    )
    dense = torch.autograd.functional.hessian(lambda t: path_loss(problem, t), theta)
    op, matvec = pc.path_hessian(problem, theta)
    probes = torch.randn(3, op.dim, dtype=F64, generator=torch.Generator().manual_seed(2))
    # float64 throughout: agreement to rounding, scaled by the entries' size
    assert torch.allclose(matvec(probes), probes @ dense, rtol=1e-9, atol=1e-10)
    loss, _ = problem.loss_and_grad(theta)
    assert op.loss_and_gradient()[0] == pytest.approx(loss, rel=1e-12)
    # merging the chunks would normalize both with one set of statistics: a different loss
    merged = pc.path_hessian(replace(problem, chunk=64), theta)[1](probes)
    assert not torch.allclose(merged, probes @ dense, rtol=1e-6)


def test_grouped_trace_is_the_dense_block_trace():
    problem = tiny_problem()
    theta = problem.theta_init
    dense = torch.autograd.functional.hessian(lambda t: path_loss(problem, t), theta)
    part = partition(problem.net.module)
    block = torch.zeros(part.n_groups, dtype=F64).index_add_(0, part.labels, dense.diagonal())
    _, matvec = pc.path_hessian(problem, theta)
    est = hutchpp_groups(matvec, theta.numel(), part.labels, budget=3 * theta.numel(), seed=0)
    # a sketch of every column spans the space: the per-group traces are exact
    assert torch.allclose(est.values, block, rtol=1e-8, atol=1e-10)
    w = part.weights(theta)
    exact_inv = (w[part.labels] * dense.diagonal()).sum().item()
    assert est.combine(w).value == pytest.approx(exact_inv, rel=1e-8)


def test_curvature_point_against_dense_reference(tmp_path):
    """Hutch++ trace within 4 standard errors of the dense trace, λ_max within its residual
    bound of the dense λ_max (Lanczos converged), the invariant trace of tr(DH)."""
    problem = tiny_problem()
    theta = problem.theta_init
    dense = torch.autograd.functional.hessian(lambda t: path_loss(problem, t), theta)
    part = partition(problem.net.module)
    point = pc.curvature_at(
        problem, theta, part, budget=60, lanczos_steps=40, seed=3, path=tmp_path / "p.pt"
    )
    assert abs(point.trace - dense.trace().item()) < 4 * point.trace_se
    d = part.weights(theta)[part.labels]
    assert abs(point.invariant - (d * dense.diagonal()).sum().item()) < 4 * point.invariant_se
    top = torch.linalg.eigvalsh(dense)[-1].item()
    assert abs(point.lam_max - top) <= point.lam_max_residual + 1e-9
    assert point.n_matvecs == 60 + 40 and point.seed == 3
    again = pc.curvature_at(
        problem, theta, part, budget=60, lanczos_steps=40, seed=3, path=tmp_path / "p.pt"
    )
    assert again.trace == point.trace and torch.equal(again.group_traces, point.group_traces)


def test_hessian_checks_pass_on_a_tiny_path():
    problem = tiny_problem()
    checks = pc.hessian_checks(problem, problem.theta_init, partition(problem.net.module), 0)
    assert [c.name for c in checks] == [
        "operator_loss_is_path_loss",
        "hvp_matches_finite_difference",
        "float32_hvp_error",
        "scale_invariance_loss",
        "scale_invariance_euler",
    ]
    assert all(c.passed for c in checks), checks


def test_spread_keeps_ends_and_count():
    assert tap.spread(list(range(5)), 20) == list(range(5))
    picked = tap.spread(list(range(11, 41)), 20)
    assert len(picked) == 20 and picked[0] == 11 and picked[-1] == 40
    assert picked == sorted(set(picked))


# --------------------------------------------------------------------------------------------
# The valley, and no recomputation
# --------------------------------------------------------------------------------------------
class Counter:
    """Counts calls of a function it wraps (monkeypatched into a module)."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


def test_valley_only_projects_the_tail_and_reuses_a_full_run(tmp_path, monkeypatch):
    problem = tiny_problem()
    full = pp.run_path(problem, TINY, 0, tmp_path / "full")
    assert pp.valley_epochs(full) == [4, 5, 6, 7, 8]
    tail = pp.run_path(problem, TINY, 0, tmp_path / "tail", valley_only=True)
    assert sorted(tail.points) == [e * TINY.iters_per_epoch for e in range(3, 9)]
    assert pp.valley_epochs(tail) == [4, 5, 6, 7, 8]
    for k in tail.points:  # the same projections as the full run's
        assert torch.equal(tail.points[k].theta, full.points[k].theta)
    # a valley-only run over the full run's files computes nothing: no SGD step, no descent
    steps = Counter(proto.sgd_steps)
    grads = Counter(ppb.Problem.loss_and_grad)
    monkeypatch.setattr(proto, "sgd_steps", steps)
    monkeypatch.setattr(ppb.Problem, "loss_and_grad", grads)
    again = pp.run_path(problem, TINY, 0, tmp_path / "full", valley_only=True)
    assert steps.calls == 0 and grads.calls == 0
    assert sorted(again.points) == sorted(tail.points)


def test_trace_run_reads_back_what_it_computed(tmp_path, monkeypatch):
    problem = tiny_problem()
    path = pp.run_path(problem, TINY, 0, tmp_path / "path", valley_only=True)
    first = tap.trace_run(TINY, 0, "cpu", tmp_path / "path", tmp_path / "trace", TCFG, path=path)
    assert first.epochs == [4, 5, 7, 8]  # four of the valley's five epochs, ends kept
    moved = [
        e
        for e in first.epochs
        if not torch.equal(path.states[e].theta, path.projected_theta(e * 4))
    ]
    assert moved  # some SGD states are not their own projection
    assert first.computed == len(first.epochs) + len(moved)
    for e, p, s in zip(first.epochs, first.projected, first.sgd, strict=True):
        assert (p is s) == (e not in moved)
        assert math.isfinite(p.lam_max) and (math.isnan(s.lam_max) or p is s)
    calls = Counter(HessianOperator.__call__)
    monkeypatch.setattr(HessianOperator, "__call__", lambda self, v: calls(self, v))
    again = tap.trace_run(TINY, 0, "cpu", tmp_path / "path", tmp_path / "trace", TCFG, path=path)
    assert again.computed == 0 and calls.calls == 0
    assert [p.trace for p in again.projected] == [p.trace for p in first.projected]


def test_parallel_runs_give_the_bits_of_sequential_ones(tmp_path, monkeypatch):
    def synthetic_path(cfg, seed, device, folder, *, valley_only=False):
        return pp.run_path(
            ppb.synthetic(cfg, seed, side=6), cfg, seed, folder, valley_only=valley_only
        )

    monkeypatch.setattr(tap.pp, "projected_path", synthetic_path)
    tcfg = replace(TCFG, paths=(TINY, replace(TINY, name="tiny, no BN", batch_norm=False)), seeds=2)
    out = {}
    for workers in (1, 2):
        root = tmp_path / f"w{workers}"
        out[workers] = tap.trace_runs(
            replace(tcfg, workers=workers),
            0,
            "cpu",
            lambda name, s, root=root: root / name / f"seed{s}",
        )
    assert out[2].points == out[1].points and out[2].computed == out[1].computed
    for name in out[1].runs:
        for a, b in zip(out[1][name], out[2][name], strict=True):
            assert [p.trace for p in a.projected] == [p.trace for p in b.projected]
            assert [p.lam_max for p in a.projected] == [p.lam_max for p in b.projected]


# --------------------------------------------------------------------------------------------
# Slopes, intervals, fractions, correlations
# --------------------------------------------------------------------------------------------
def fake_run(
    seed: int,
    epochs,
    trace,
    val,
    lam,
    invariant=None,
    sgd_trace=None,
    lr=0.2,
    momentum=0.9,
    inv_part=None,
):
    """A TraceRun with given series: two groups, the first scale-invariant."""
    ipe = 4
    cfg = replace(TINY, lr=lr, momentum=momentum)
    invariant = trace if invariant is None else invariant
    inv_part = np.zeros_like(trace) if inv_part is None else inv_part
    sgd_trace = trace if sgd_trace is None else sgd_trace

    def point(k, t, i, part, lm):
        return pc.PointCurvature(
            step=k,
            trace=float(t),
            trace_se=0.01,
            invariant=float(i),
            invariant_se=0.01,
            group_traces=torch.tensor([part, t - part], dtype=F64),
            group_norms=torch.ones(2, dtype=F64),
            lam_max=lm,
            lam_max_residual=0.001,
            lam_min=0.0,
            lam_min_residual=0.0,
            lanczos_steps=5,
            n_matvecs=1,
            seed=0,
        )

    proj = [
        point(e * ipe, t, i, p, lm)
        for e, t, i, p, lm in zip(epochs, trace, invariant, inv_part, lam, strict=True)
    ]
    sgd = [point(e * ipe, t, t, 0.0, math.nan) for e, t in zip(epochs, sgd_trace, strict=True)]
    points = {
        e * ipe: SimpleNamespace(val_excess=v, excess=0.0) for e, v in zip(epochs, val, strict=True)
    }
    states = {
        e: SimpleNamespace(val_excess=v, train_excess=0.0) for e, v in zip(epochs, val, strict=True)
    }
    path = SimpleNamespace(points=points, states=states)
    part = SimpleNamespace(invariant=torch.tensor([True, False]))
    return tap.TraceRun(cfg, seed, path, list(epochs), proj, sgd, part)


def test_slopes_intervals_and_fractions_on_known_trends():
    rng = np.random.default_rng(0)
    epochs = list(range(10, 31))
    x = np.array(epochs, dtype=float)
    slopes = [-0.5, -0.3, -0.4, 0.1, -0.6]
    runs = []
    for s, b in enumerate(slopes):
        trace = 50 + b * (x - 10) + rng.normal(0, 0.2, x.size)
        val = 0.4 + 0.002 * (x - 10) + rng.normal(0, 0.001, x.size)
        runs.append(
            fake_run(
                s,
                epochs,
                trace,
                val,
                lam=np.full(x.size, 2.0 + s),
                invariant=2 * trace,
                sgd_trace=trace + 1,
                inv_part=0.25 * trace,
            )
        )
    summary = ta.summarize(runs)
    fitted = [np.polyfit(x, [p.trace for p in r.projected], 1)[0] for r in runs]
    assert summary.trace_slope.value == pytest.approx(np.mean(fitted))
    half = stats.t.ppf(0.975, 4) * np.std(fitted, ddof=1) / np.sqrt(5)
    assert summary.trace_slope.hi - summary.trace_slope.value == pytest.approx(half)
    assert summary.frac_seeds_decreasing == 0.8 and summary.seeds == 5
    assert summary.invariant_slope.value == pytest.approx(2 * np.mean(fitted))
    assert summary.sgd_slope.value == pytest.approx(np.mean(fitted))
    assert summary.bn_share == pytest.approx(0.25)
    rho = [stats.spearmanr([p.trace for p in r.projected], r.val_excess())[0] for r in runs]
    assert summary.val_rho.value == pytest.approx(np.mean(rho))
    assert summary.frac_val_rho_negative == np.mean(np.array(rho) < 0)
    assert summary.lam_max == 6.0 and summary.lambda_eta_over_2 == pytest.approx(6.0 * 0.2 / 2)
    assert summary.lambda_eta_heavy_ball == pytest.approx(6.0 * 0.2 / (2 * 1.9))
    assert summary.decreases == (summary.trace_slope.hi < 0)
    head = ta.headline_metrics([summary])
    assert head["trace_slope"] is summary.trace_slope and head["seeds"] == 5


def test_a_flat_trace_is_not_called_decreasing():
    rng = np.random.default_rng(1)
    epochs = list(range(20))
    runs = [
        fake_run(s, epochs, 40 + rng.normal(0, 1, 20), rng.normal(0.4, 0.01, 20), lam=np.ones(20))
        for s in range(5)
    ]
    summary = ta.summarize(runs)
    assert summary.trace_slope.lo < 0 < summary.trace_slope.hi
    assert not summary.decreases


def test_seed_curves_interpolate_on_the_common_epochs():
    a = fake_run(0, [2, 4, 6], np.array([10.0, 8.0, 6.0]), [0.1] * 3, lam=[1.0] * 3)
    b = fake_run(1, [3, 5, 7], np.array([9.0, 9.0, 9.0]), [0.1] * 3, lam=[1.0] * 3)
    c = ta.seed_curves([a, b])
    assert c.grid.tolist() == [3.0, 4.0, 5.0, 6.0]
    assert c.values[0].tolist() == [9.0, 8.0, 7.0, 6.0] and c.values[1].tolist() == [9.0] * 4
    assert c.mean.tolist() == [9.0, 8.5, 8.0, 7.5]


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------
def test_configs_for_every_scale():
    for scale in SCALES:
        cfg = tap.TraceConfig.for_scale(scale)
        assert all(c.max_depth == 0 for c in cfg.paths)
    small = tap.TraceConfig.for_scale("small")
    bn, no_bn = small.paths
    assert small.seeds >= 5 and small.points >= 20
    assert bn.batch_norm and not no_bn.batch_norm
    # the same network and protocol apart from BatchNorm, and the previous chapter's folder
    assert replace(no_bn, batch_norm=True, name=bn.name) == bn
    assert pp.checkpoint_name(bn) == pp.checkpoint_name(pp.small_path())
    paper = tap.TraceConfig.for_scale("paper")
    assert paper.seeds == 10
    assert tap.required_data("small") == {"fashion-mnist": False}
    assert tap.required_data("paper") == {"cifar10": True, "cifar100": True, "mnist": True}
    assert {c.model for c in paper.paths} == {"preact-resnet18", "vgg16", "densenet-bc"}


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"seeds": 0}, "seeds=0"),
        ({"budget": 2}, "budget=2"),
        ({"points": 1}, "points=1"),
        ({"paths": ()}, "paths=()"),
    ],
)
def test_config_refuses_bad_values(change, match):
    with pytest.raises(ValueError, match=match.replace("(", r"\(").replace(")", r"\)")):
        replace(TCFG, **change)
