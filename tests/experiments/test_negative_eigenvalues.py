"""The SGD runs of Fig. 2(a) against closed forms and simulation: the noise of sampled labels,
the exact batch average of the fluctuation–dissipation relation, the runs themselves on a tiny
network, and resuming a killed sweep to bit-identical results."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from tiny_network import TINY

from hessnoise.experiments import floor_sgd
from hessnoise.experiments import negative_eigenvalues as ne
from hessnoise.losses import cross_entropy
from hessnoise.scales import SCALES

F64 = torch.float64


@pytest.mark.parametrize("scale", SCALES)
def test_configs_sweep_the_same_noise_scales(scale):
    cfg = ne.NegativeEigenvaluesConfig.for_scale(scale)
    assert cfg.eta0 in cfg.etas and cfg.batch_size0 in cfg.batch_sizes
    # the two sweeps cover the same noise scales 𝒞 = η/4S (the collapse test compares them)
    c_eta = sorted(cfg.c_a3("sampled-labels", e, cfg.batch_size0) for e in cfg.etas)
    c_bat = sorted(cfg.c_a3("sampled-labels", cfg.eta0, s) for s in cfg.batch_sizes)
    assert c_eta[0] == pytest.approx(c_bat[0]) and c_eta[-1] == pytest.approx(c_bat[-1])


def test_small_scale_has_five_noise_scales_per_sweep_and_three_seeds():
    cfg = ne.NegativeEigenvaluesConfig.for_scale("small")
    assert len(set(cfg.etas)) >= 5 and len(set(cfg.batch_sizes)) >= 5 and cfg.seeds >= 3


def test_paper_scale_sweeps_are_section_4_1():
    cfg = ne.NegativeEigenvaluesConfig.for_scale("paper")
    assert min(cfg.batch_sizes) == 5 and max(cfg.batch_sizes) == 250
    assert min(cfg.etas) == 0.002 and max(cfg.etas) == 0.1


@pytest.mark.parametrize(
    ("change", "match"),
    [({"eta0": 0.2}, "eta0=0.2"), ({"batch_size0": 7}, "batch_size0=7"),
     ({"batch_sizes": (5, 10, 50)}, "max\\(batch_sizes\\)=50"),
     ({"etas": (0.05, 0.1)}, "etas=.*at least 3")],
)  # fmt: skip
def test_config_refuses_bad_values_naming_them(change, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(TINY, **change)


def test_kappa_of_each_noise():
    assert TINY.kappa("minibatch", 5) == pytest.approx((1 - 5 / 20) / 5)
    assert TINY.kappa("minibatch", 20) == 0.0  # S = M is gradient descent
    assert TINY.kappa("sampled-labels", 20) == pytest.approx(1 / 20)
    assert TINY.c_a3("sampled-labels", 0.1, 5) == pytest.approx(0.1 / 20)


def batch_gradients(problem, theta, s, protocol, draws, seed):
    """``draws`` actual mini-batch gradients ``(draws, P)`` of the protocol at θ."""
    gen = torch.Generator().manual_seed(seed)
    draw = ne.draw_minibatch(problem, s, protocol)

    def loss(th, xb, tb):
        return cross_entropy(problem.net(th, xb), tb)

    xs, ts = zip(*(draw(gen) for _ in range(draws)), strict=True)
    per_batch = torch.vmap(torch.func.grad(loss), in_dims=(None, 0, 0))
    return per_batch(theta, torch.stack(xs), torch.stack(ts))


def test_sampled_label_noise_at_the_floor_is_h_over_s(tiny):
    # simulation against the proposition: Cov(∇L^B) = H/S for sampled labels; 0 for fixed q
    _cfg, problem, floor = tiny
    s, draws = 5, 3000
    grads = batch_gradients(problem, floor.theta, s, "sampled-labels", draws, 0)
    cov = grads.T @ grads / draws  # the mean is zero by the proposition
    h = problem.hessian(floor.theta)
    lam, vec = torch.linalg.eigh(h)
    # trace and top-direction variance: Monte Carlo s.e. ≈ √(2/draws) ≈ 2.6 %; allow 4 of them
    assert torch.trace(cov).item() == pytest.approx(torch.trace(h).item() / s, rel=0.1)
    top = vec[:, -1]
    assert (top @ cov @ top).item() == pytest.approx(lam[-1].item() / s, rel=0.1)
    fixed = batch_gradients(problem, floor.theta, s, "minibatch", 50, 1)
    assert fixed.norm(dim=1).max() < 1e-9


@pytest.mark.parametrize("protocol", ["sampled-labels", "minibatch"])
def test_noise_power_is_the_batch_average_of_actual_batches(tiny, protocol):
    # simulation against the exact formula, away from the floor where both protocols are noisy
    _cfg, problem, floor = tiny
    g = torch.Generator().manual_seed(4)
    theta = floor.theta + 0.3 * floor.basis @ torch.randn(floor.basis.shape[1], dtype=F64,
                                                          generator=g)  # fmt: skip
    s, draws = 5, 4000
    grad, power = ne.noise_power(problem, theta, floor.basis, s, protocol)
    full = torch.func.grad(problem.loss)(theta)
    assert torch.allclose(grad, floor.basis.T @ full, atol=1e-12)
    sq = (batch_gradients(problem, theta, s, protocol, draws, 2) @ floor.basis).pow(2).sum(1)
    # Monte Carlo s.e. of the mean of a positive heavy-tailed quantity: measured ≈ 1 %; allow 5
    assert sq.mean().item() == pytest.approx(power, rel=0.05)


def test_runs_of_a_sweep_on_the_tiny_network(tiny, tiny_sweep, capsys, monkeypatch):
    cfg, problem, floor = tiny
    monkeypatch.setenv("HESSNOISE_PROGRESS", "lines")
    mb = ne.sweep(problem, floor, cfg, "minibatch", 0, tau=cfg.minibatch_tau,
                  snapshots=cfg.minibatch_snapshots)  # fmt: skip
    out, err = capsys.readouterr()
    # one progress line per distinct run (the shared centre once), on stdout only
    assert err == "" and out.count("[progress] sweep minibatch, seed 0: ") == len(mb.runs) == 5
    assert max(abs(r.excess) for r in mb.runs) < 1e-12  # no noise on an interpolating floor
    assert all(int(r.n_neg.max()) == 0 for r in mb.runs)
    sw = tiny_sweep
    assert len(sw.runs) == 5 and sw.eta_sweep[1] is sw.batch_sweep[1]
    for r in sw.runs:
        assert r.sum_neg.shape == (cfg.snapshots, len(ne.TOL_FACTORS))
        assert r.excess > 0 and r.sum_negative < 0 and int(r.n_neg.min()) > 0
        # A.3 at leading order, loosely: the windows here are far too short for precision
        assert r.excess == pytest.approx(r.C * floor.trace, rel=0.6)
        # the floor below the final state: a nearby point of the same valley
        assert 0.5 * floor.trace < r.end_floor_trace < 1.5 * floor.trace
        assert r.fdr_lhs.shape == r.fdr_rhs.shape == (cfg.snapshots,)
        assert (r.fdr_rhs > 0).all() and abs(r.fdr_gap.value) < 1.0


def test_projection_returns_to_the_floor(tiny):
    cfg, problem, floor = tiny
    g = torch.Generator().manual_seed(2)
    displaced = floor.theta + 1e-3 * torch.randn(problem.n_params, dtype=F64, generator=g)
    back, trace = ne.project_to_floor(problem, displaced, cfg.floor)
    assert problem.loss_value(back) - floor.loss < 1e-14
    # a small displacement returns to a floor point within a few times its length
    assert (back - floor.theta).norm() < 5 * (displaced - floor.theta).norm()
    assert trace == pytest.approx(floor.trace, rel=1e-2)


class Killed(RuntimeError):
    pass


@pytest.mark.slow
def test_killed_sweep_resumes_to_the_same_results(tiny, tmp_path, monkeypatch):
    cfg, problem, floor = tiny
    ref = ne.sweep(problem, floor, cfg, "sampled-labels", 1)
    calls = {"n": 0}
    real = floor_sgd.snapshot  # what each run calls at a snapshot

    def dies(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 8:  # in the third run, after its first checkpoint
            raise Killed
        return real(*args, **kwargs)

    monkeypatch.setattr(floor_sgd, "snapshot", dies)
    with pytest.raises(Killed):
        ne.sweep(problem, floor, cfg, "sampled-labels", 1, checkpoint_dir=tmp_path)
    monkeypatch.setattr(floor_sgd, "snapshot", real)
    assert len(list(tmp_path.glob("sampled-labels_*.pt"))) == 3
    res = ne.sweep(problem, floor, cfg, "sampled-labels", 1, checkpoint_dir=tmp_path)
    assert [r.resumed_from for r in res.runs][:2] == [r.steps for r in res.runs][:2]
    assert 0 < res.runs[2].resumed_from < res.runs[2].steps
    for a, b in zip(ref.runs, res.runs, strict=True):
        assert torch.equal(a.block_excess, b.block_excess) and torch.equal(a.sum_neg, b.sum_neg)
        assert torch.equal(a.fdr_lhs, b.fdr_lhs)


@pytest.mark.slow
def test_run_seed_reads_its_floor_and_runs_back_from_checkpoints(tmp_path):
    first = ne.run_seed(TINY, 0, "cpu", tmp_path / "floor", tmp_path / "runs")
    again = ne.run_seed(TINY, 0, "cpu", tmp_path / "floor", tmp_path / "runs")
    assert all(r.resumed_from == r.steps for r in again.sampled.runs + again.minibatch.runs)
    for a, b in zip(first.sampled.runs, again.sampled.runs, strict=True):
        assert torch.equal(a.sum_neg, b.sum_neg) and a.end_floor_trace == b.end_floor_trace
