"""The negative-eigenvalue experiment (Section 4.1, App. A.3, Fig. 2(a)) against closed forms,
independent references and simulation: the target entropy, the fits and their intervals, the
sum of negative eigenvalues on flat and curved valleys, the noise of sampled labels, and the
whole pipeline at a tiny size, including resuming a killed sweep."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from hessnoise import models, train
from hessnoise.curvature import spectrum
from hessnoise.experiments import negative_eigenvalues as ne
from hessnoise.scales import SCALES

F64 = torch.float64


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", SCALES)
def test_configs_exist_for_every_scale(scale):
    cfg = ne.NegativeEigenvaluesConfig.for_scale(scale)
    assert cfg.eta0 in cfg.etas and cfg.batch_size0 in cfg.batch_sizes
    # the two sweeps cover the same noise scales 𝒞 = η/4S (the collapse test compares them)
    c_eta = sorted(cfg.c_a3("sampled-labels", e, cfg.batch_size0) for e in cfg.etas)
    c_bat = sorted(cfg.c_a3("sampled-labels", cfg.eta0, s) for s in cfg.batch_sizes)
    assert c_eta[0] == pytest.approx(c_bat[0]) and c_eta[-1] == pytest.approx(c_bat[-1])
    side = cfg.size or 8
    p = models.n_params(models.mlp(side * side, [cfg.hidden], ne.N_CLASSES))
    assert p > cfg.n_constraints  # the network can interpolate the smoothed targets


def test_paper_scale_is_section_4_1():
    cfg = ne.NegativeEigenvaluesConfig.for_scale("paper")
    assert (cfg.dataset, cfg.n, cfg.size, cfg.hidden) == ("mnist", 500, 14, 30)
    assert cfg.floor_method == "gd+gauss-newton" and (cfg.gd_lr, cfg.gd_epochs) == (0.1, 10_000)
    assert min(cfg.batch_sizes) == 5 and max(cfg.batch_sizes) == 250 and max(cfg.etas) == 0.1
    # 196·30 + 30 + 30·10 + 10 = 6,220, counted by the model itself
    assert models.n_params(models.mlp(14 * 14, [30], 10)) == ne.PAPER_PARAMS == 6220
    assert cfg.expected_params == 6220


BASE = dict(
    dataset="digits", n=20, size=4, hidden=24, etas=(0.025, 0.05, 0.1), batch_sizes=(5, 10, 20),
    eta0=0.05, batch_size0=10, tau_equil=10, tau_measure=12, snapshots=3,
    minibatch_tau=(2, 2), minibatch_snapshots=1, probe_cs=(1e-8, 1e-4), bootstrap=100,
    checkpoint_every=50,
)  # fmt: skip


@pytest.mark.parametrize(
    ("change", "match"),
    [({"dataset": "cifar10"}, "dataset='cifar10'"), ({"eta0": 0.2}, "eta0=0.2"),
     ({"batch_size0": 7}, "batch_size0=7"), ({"batch_sizes": (5, 10, 50)}, r"batch_sizes\[2\]=50"),
     ({"etas": (0.05, 0.1)}, "etas=.*at least 3"), ({"eps": 1.0}, "eps=1.0"),
     ({"snapshots": 2}, "snapshots=2"), ({"probe_cs": (1e-4, 1e-8)}, "probe_cs=.*increasing"),
     ({"floor_method": "adam"}, "floor_method='adam'"), ({"minibatch_tau": (1.0,)}, "pair"),
     ({"hidden": 0}, "hidden=0")],
)  # fmt: skip
def test_config_refuses_bad_values_naming_them(change, match):
    with pytest.raises(ValueError, match=match):
        ne.NegativeEigenvaluesConfig(**{**BASE, **change})


def test_kappa_of_each_noise():
    cfg = ne.NegativeEigenvaluesConfig(**BASE)
    assert cfg.kappa("minibatch", 5) == pytest.approx((1 - 5 / 20) / 5)
    assert cfg.kappa("minibatch", 20) == 0.0  # S = M is gradient descent
    assert cfg.kappa("sampled-labels", 20) == pytest.approx(1 / 20)
    assert cfg.c_a3("sampled-labels", 0.1, 5) == pytest.approx(0.1 / 20)
    with pytest.raises(ValueError, match="protocol='label-noise'"):
        cfg.kappa("label-noise", 5)


# --------------------------------------------------------------------------------------------
# The loss and its floor
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("eps", "k"), [(0.1, 10), (0.3, 4), (0.0, 10)])
def test_target_entropy_against_a_direct_computation(eps, k):
    q = ne.smoothed_targets(torch.tensor([0, k - 1, 1]), k, eps)
    assert torch.allclose(q.sum(1), torch.ones(3, dtype=F64))
    direct = -(q * torch.where(q > 0, q.log(), torch.zeros_like(q))).sum(1)
    assert torch.allclose(direct, torch.full((3,), ne.target_entropy(eps, k), dtype=F64))


def test_pytorch_label_smoothing_floor_is_the_target_entropy():
    # outputs log q interpolate the targets: PyTorch's loss is then exactly H(q), not 0
    y = torch.tensor([2, 0, 7, 7])
    q = ne.smoothed_targets(y, 10, 0.1)
    loss = nn.CrossEntropyLoss(label_smoothing=0.1)(q.log(), y)
    assert abs(loss.item() - ne.target_entropy(0.1)) < 1e-15


def test_cross_entropy_matches_pytorch_for_soft_and_hard_targets(gen):
    out = torch.randn(6, 10, dtype=F64, generator=gen)
    y = torch.randint(0, 10, (6,), generator=gen)
    ref = nn.CrossEntropyLoss(label_smoothing=0.1)(out, y)
    assert abs(ne.cross_entropy(out, ne.smoothed_targets(y, 10, 0.1)) - ref) < 1e-14
    assert abs(ne.cross_entropy(out, y) - nn.functional.cross_entropy(out, y)) < 1e-14


# --------------------------------------------------------------------------------------------
# Fits and intervals
# --------------------------------------------------------------------------------------------
def test_ols_against_scipy_linregress(gen):
    x = np.linspace(0.1, 2.0, 9)
    y = -3.0 * x + 0.5 + 0.1 * np.sin(7 * x)
    fit, ref = ne.ols(x, y), stats.linregress(x, y)
    assert fit.slope == pytest.approx(ref.slope, rel=1e-12)
    assert fit.intercept == pytest.approx(ref.intercept, rel=1e-12)
    assert fit.r2 == pytest.approx(ref.rvalue**2, rel=1e-12)
    assert fit.se_slope == pytest.approx(ref.stderr, rel=1e-12)
    assert fit.se_intercept == pytest.approx(ref.intercept_stderr, rel=1e-12)
    exact = ne.ols(x, 2 * x - 1)
    assert (exact.slope, exact.intercept, exact.r2) == pytest.approx((2, -1, 1), abs=1e-12)


def test_ols_intervals_cover_the_true_slope_at_their_level():
    rng = np.random.default_rng(0)
    x = np.linspace(0, 1, 6)
    trials = 2000
    hits = 0
    for _ in range(trials):
        f = ne.ols(x, -4 * x + rng.normal(0, 0.3, 6))
        hits += f.ci_slope[0] <= -4 <= f.ci_slope[1]
    # binomial s.e. of the coverage at 95 %: sqrt(.95·.05/2000) ≈ 0.5 %; allow 4 of them
    assert abs(hits / trials - 0.95) < 0.02


def test_ols_refuses_degenerate_input():
    with pytest.raises(ValueError, match="constant"):
        ne.ols([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="length"):
        ne.ols([1.0, 2.0], [1.0, 2.0])


def test_two_term_fit_and_exponent_recover_known_laws():
    x = np.geomspace(1e-3, 1e-1, 7)
    assert ne.two_term_fit(x, -2 * np.sqrt(x) - 30 * x) == pytest.approx((-2, -30), rel=1e-10)
    assert ne.power_law_exponent(x, -5 * x**0.7) == pytest.approx(0.7, rel=1e-12)
    with pytest.raises(ValueError, match="one sign"):
        ne.power_law_exponent(x, np.sin(100 * x))


def fake_run(eta, s, x, y, noise, rng, blocks=40):
    """A RunResult with block values x + noise and y·(1 + noise)."""
    return ne.RunResult(
        protocol="sampled-labels", eta=eta, batch_size=s, kappa=1 / s, C=eta / (4 * s),
        steps=1, block_excess=torch.tensor(x * (1 + noise * rng.normal(size=blocks))),
        sum_neg=torch.tensor(y * (1 + noise * rng.normal(size=blocks)))[:, None].repeat(1, 3),
        n_neg=torch.ones(blocks), trace=torch.ones(blocks), lam_min=-torch.ones(blocks),
        last_eigenvalues=torch.ones(3),
    )  # fmt: skip


def fake_sweep(slope_eta, slope_batch, noise=0.02, seed=0):
    rng = np.random.default_rng(seed)
    centre = fake_run(0.05, 10, 0.02, slope_eta * 0.02, noise, rng)
    eta_runs = [
        fake_run(0.01, 10, 0.004, slope_eta * 0.004, noise, rng),
        centre,
        fake_run(0.1, 10, 0.04, slope_eta * 0.04, noise, rng),
    ]
    s_runs = [
        fake_run(0.05, 5, 0.04, slope_batch * 0.04, noise, rng),
        centre,
        fake_run(0.05, 50, 0.004, slope_batch * 0.004, noise, rng),
    ]
    return ne.Sweep("sampled-labels", eta_runs, s_runs)  # fmt: skip


def test_analysis_of_a_proportional_law_that_collapses():
    an = ne.analyse(fake_sweep(-30, -30), n_boot=400, seed=0)
    assert len(an.x) == 5  # the shared centre is counted once
    # 2 % noise per block, 40 blocks: run means good to ~0.3 %; margins are several times that
    assert an.slope.value == pytest.approx(-30, rel=0.03) and an.slope.contains(-30)
    assert abs(an.intercept.value) < 0.01 * 30 * an.x.max()
    assert an.exponent.value == pytest.approx(1.0, abs=0.03)
    xm = an.x.max()
    assert abs(an.a_sqrt.value) * math.sqrt(xm) < 0.05 * abs(an.b_lin.value) * xm
    assert an.collapse.z < 3 and an.collapse.resolution < 0.5
    assert an.slope.lo < an.slope.value < an.slope.hi and an.r2.value > 0.999


def test_collapse_test_fails_when_the_sweeps_disagree():
    an = ne.analyse(fake_sweep(-30, -45), n_boot=400, seed=0)
    assert an.collapse.z > 3
    assert an.collapse.slope_eta.contains(-30) and an.collapse.slope_batch.contains(-45)


def test_square_root_law_is_told_apart_from_a_line():
    rng = np.random.default_rng(1)
    runs = [fake_run(e, 10, x, -2 * math.sqrt(x), 0.01, rng)
            for e, x in ((0.01, 0.004), (0.05, 0.02), (0.1, 0.04))]  # fmt: skip
    sw = ne.Sweep("sampled-labels", runs, [runs[1], runs[0], runs[2]])
    an = ne.analyse(sw, n_boot=300, seed=0)
    assert an.exponent.contains(0.5) and not an.exponent.contains(1.0)
    assert not an.intercept.contains(0.0)


# --------------------------------------------------------------------------------------------
# The sum of negative eigenvalues: closed forms and simulation
# --------------------------------------------------------------------------------------------
def sphere_hessian(w: torch.Tensor, lam: float) -> torch.Tensor:
    return torch.autograd.functional.hessian(lambda v: 0.5 * lam * (v.norm() - 1) ** 2, w)


@pytest.mark.parametrize("delta", [-0.03, -1e-4, 0.02])
def test_curved_valley_negative_sum_has_its_closed_form(delta, gen):
    # L = ½λ(‖w‖ − 1)²: at radius 1 + δ the N − 1 tangential eigenvalues are λδ/(1 + δ)
    n, lam = 7, 2.5
    u = torch.randn(n, dtype=F64, generator=gen)
    h = sphere_hessian((1 + delta) * u / u.norm(), lam)
    expected = (n - 1) * lam * delta / (1 + delta) if delta < 0 else 0.0
    assert spectrum(h).sum_negative() == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_curved_valley_time_average_scales_as_the_square_root_of_the_loss():
    # simulation against theory: δ ~ N(0, 2𝒞) gives ⟨s₋⟩ ≈ −(N − 1)λ√(𝒞/π) and ⟨L⟩ − L* = λ𝒞
    n, lam, samples = 5, 2.0, 40_000
    g = torch.Generator().manual_seed(0)
    for c in (1e-6, 1e-4):
        delta = math.sqrt(2 * c) * torch.randn(samples, dtype=F64, generator=g)
        s_neg = ((n - 1) * lam * (delta / (1 + delta)).clamp(max=0)).mean().item()
        theory = -(n - 1) * lam * math.sqrt(c / math.pi)
        # min(δ, 0) has sd 0.58σ and mean −0.40σ: the Monte Carlo s.e. of the mean is
        # 1.46/√samples ≈ 0.7 %, plus an O(σ) ≈ 1 % bias at 𝒞 = 1e-4; allow 4 %
        assert s_neg == pytest.approx(theory, rel=0.04)


def flat_valley(n: int, m: int, g: torch.Generator):
    """λ_i(θ̂) = a_i + g_i·θ̂ + ½θ̂ᵀA_iθ̂ on a flat floor θ = 0 (eq. 1), with a gap (a_i ≥ 1)."""
    a = 1 + torch.rand(n, dtype=F64, generator=g)
    grad = 0.5 * torch.randn(n, m, dtype=F64, generator=g)
    hess = torch.randn(n, m, m, dtype=F64, generator=g)
    hess = (hess + hess.transpose(1, 2)) / 2

    def loss(v: torch.Tensor) -> torch.Tensor:
        th, th_hat = v[:n], v[n:]
        lam = a + grad @ th_hat + 0.5 * torch.einsum("j,ijk,k->i", th_hat, hess, th_hat)
        return 0.5 * (lam * th**2).sum()

    return loss, a, grad, hess


def test_flat_valley_negative_sum_is_the_schur_complement_prediction():
    # the flat-floor proposition: s₋(H) = s₋(Σ θ_i² M_i)(1 + O(𝒞)), M_i = ½A_i − g_ig_iᵀ/a_i
    n, m = 4, 6
    g = torch.Generator().manual_seed(5)
    loss, a, grad, hess = flat_valley(n, m, g)
    z = torch.randn(n, dtype=F64, generator=g)
    errors = []
    for c in (1e-3, 1e-5):
        theta = math.sqrt(2 * c) * z
        h = torch.autograd.functional.hessian(loss, torch.cat([theta, torch.zeros(m, dtype=F64)]))
        schur = sum(theta[i] ** 2 * (0.5 * hess[i] - torch.outer(grad[i], grad[i]) / a[i])
                    for i in range(n))  # fmt: skip
        exact, predicted = spectrum(h).sum_negative(), spectrum(schur).sum_negative()
        assert predicted < 0
        errors.append(abs(exact / predicted - 1))
    # relative error O(𝒞‖g‖²/a²): a hundredfold smaller 𝒞 gives a ~hundredfold smaller error
    assert errors[0] < 0.05 and errors[1] < errors[0] / 30


# --------------------------------------------------------------------------------------------
# The pipeline at a tiny size
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny():
    cfg = ne.NegativeEigenvaluesConfig(**BASE)
    problem = ne.setup(cfg, 0, "cpu")
    floor = ne.find_floor(problem, cfg, 0)
    return cfg, problem, floor


def test_floor_is_an_interpolating_minimal_valley(tiny):
    cfg, _problem, floor = tiny
    assert floor.grad_norm < 1e-10 and floor.max_sample_grad < 1e-9
    assert abs(floor.loss - ne.target_entropy(cfg.eps)) < 1e-12
    assert floor.rank == cfg.n_constraints  # Gauss–Newton rank N(K − 1)
    assert torch.equal(floor.theta_start, floor.theta)
    assert floor.trace == pytest.approx(floor.eigenvalues.sum().item())


def test_sampled_label_noise_at_the_floor_is_h_over_s(tiny):
    # simulation against the proposition: Cov(∇L^B) = H/S for sampled labels; 0 for fixed q
    _cfg, problem, floor = tiny
    f = train.loss_function(problem.model, ne.cross_entropy)
    s, draws = 5, 3000
    gen = torch.Generator().manual_seed(0)
    sampled = ne.draw_minibatch(problem, s, "sampled-labels")
    grads = torch.stack([torch.func.grad(f)(floor.theta, *sampled(gen)) for _ in range(draws)])
    cov = grads.T @ grads / draws  # the mean is zero by the proposition
    h = problem.hessian(floor.theta)
    lam, vec = torch.linalg.eigh(h)
    # trace and top-direction variance: Monte Carlo s.e. ≈ √(2/draws) ≈ 2.6 %; allow 4 of them
    assert torch.trace(cov).item() == pytest.approx(torch.trace(h).item() / s, rel=0.1)
    top = vec[:, -1]
    assert (top @ cov @ top).item() == pytest.approx(lam[-1].item() / s, rel=0.1)
    fixed = ne.draw_minibatch(problem, s, "minibatch")
    g_fixed = torch.stack([torch.func.grad(f)(floor.theta, *fixed(gen)) for _ in range(50)])
    assert g_fixed.norm(dim=1).max() < 1e-9


def test_pipeline_end_to_end(tiny, tmp_path):
    cfg, problem, floor = tiny
    mb = ne.sweep(problem, floor, cfg, "minibatch", 0, tau=cfg.minibatch_tau,
                  snapshots=cfg.minibatch_snapshots)  # fmt: skip
    assert max(abs(r.excess) for r in mb.runs) < 1e-12  # no noise on an interpolating floor
    assert all(int(r.n_neg.max()) == 0 for r in mb.runs)
    sw = ne.sweep(problem, floor, cfg, "sampled-labels", 0)
    assert len(sw.runs) == 5 and sw.eta_sweep[1] is sw.batch_sweep[1]
    for r in sw.runs:
        assert r.sum_neg.shape == (cfg.snapshots, len(ne.TOL_FACTORS))
        assert r.excess > 0 and r.sum_negative < 0 and int(r.n_neg.min()) > 0
        # A.3 at leading order, loosely: the windows here are far too short for precision
        assert r.excess == pytest.approx(r.C * floor.trace, rel=0.6)
        # the floor below the final state: a nearby point of the same valley
        assert 0.5 * floor.trace < r.end_floor_trace < 1.5 * floor.trace
    an = ne.analyse(sw, cfg.bootstrap, 0)
    assert an.slope.value < 0 and np.isfinite(an.collapse.z)
    printed, running = ne.excess_vs_theory(sw, floor.trace)
    assert printed.shape == running.shape == (5,)
    assert (ne.excess_error_budget(sw, floor, cfg.tau_equil) > 0).all()
    assert ne.threshold_sensitivity(sw) < 1e-3
    probe = ne.curvature_probe(problem, floor, cfg.probe_cs, 0)
    assert probe.null_dim == problem.n_params - cfg.n_constraints
    assert probe.fd_relerr < 1e-5 and probe.shape_ratio > 1e3 * probe.fd_relerr
    # first order in √𝒞 is exact as 𝒞 → 0
    assert probe.linear_share[0] == pytest.approx(1.0, abs=0.02)
    assert np.isnan(ne.probe_deviation(dataclasses.replace(probe, cs=probe.cs * 1e-6), sw))


class Killed(RuntimeError):
    pass


def test_killed_sweep_resumes_to_the_same_results(tiny, tmp_path, monkeypatch):
    cfg, problem, floor = tiny
    ref = ne.sweep(problem, floor, cfg, "sampled-labels", 1)
    calls = {"n": 0}
    real = ne.snapshot

    def dies(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 8:  # in the third run, after its first checkpoint
            raise Killed
        return real(*args, **kwargs)

    monkeypatch.setattr(ne, "snapshot", dies)
    with pytest.raises(Killed):
        ne.sweep(problem, floor, cfg, "sampled-labels", 1, checkpoint_dir=tmp_path)
    monkeypatch.setattr(ne, "snapshot", real)
    assert len(list(tmp_path.glob("sampled-labels_*.pt"))) == 3
    res = ne.sweep(problem, floor, cfg, "sampled-labels", 1, checkpoint_dir=tmp_path)
    assert [r.resumed_from for r in res.runs][:2] == [r.steps for r in res.runs][:2]
    assert 0 < res.runs[2].resumed_from < res.runs[2].steps
    for a, b in zip(ref.runs, res.runs, strict=True):
        assert torch.equal(a.block_excess, b.block_excess) and torch.equal(a.sum_neg, b.sum_neg)


def test_floor_checkpoint_is_reused_and_invalidated_by_the_config(tiny, tmp_path):
    cfg, problem, floor = tiny
    first = ne.find_floor(problem, cfg, 0, tmp_path)
    assert torch.equal(first.theta, floor.theta)
    state = train.load_checkpoint(tmp_path / "floor.pt")
    state["theta"] = state["theta"] + 1.0  # a cached floor is read back as it is
    train.save_checkpoint(tmp_path / "floor.pt", state)
    assert torch.equal(ne.find_floor(problem, cfg, 0, tmp_path).theta, state["theta"])
    other = dataclasses.replace(cfg, floor_iter=cfg.floor_iter + 1)
    assert torch.equal(ne.find_floor(problem, other, 0, tmp_path).theta, floor.theta)


def test_paper_protocol_floor_starts_at_the_gradient_descent_point():
    cfg = ne.NegativeEigenvaluesConfig(**{**BASE, "floor_method": "gd+gauss-newton",
                                          "gd_epochs": 50, "gd_lr": 0.1})  # fmt: skip
    problem = ne.setup(cfg, 0, "cpu")
    floor = ne.find_floor(problem, cfg, 0)
    assert floor.start_loss > floor.loss + 1e-3 and floor.grad_norm < 1e-10
    # the paper's protocol descends from there: its excess loss is positive and varies
    run = ne.run_sgd(problem, floor, cfg, "minibatch", 0.1, 5, 0, tau=(1, 2), snapshots=2)
    assert run.excess > 1e-4


def test_projection_returns_to_the_floor(tiny):
    cfg, problem, floor = tiny
    g = torch.Generator().manual_seed(2)
    displaced = floor.theta + 1e-3 * torch.randn(problem.n_params, dtype=F64, generator=g)
    back, trace = ne.project_to_floor(problem, displaced, cfg)
    assert problem.loss(back) - floor.loss < 1e-14
    # a small displacement returns to a floor point within a few times its length
    assert (back - floor.theta).norm() < 5 * (displaced - floor.theta).norm()
    assert trace == pytest.approx(floor.trace, rel=1e-2)


def test_checkpoint_dir_sits_beside_the_results():
    path = ne.checkpoint_dir("/b/_build/results/small", "small", 3)
    assert str(path) == "/b/_build/checkpoints/small/negative_eigenvalues/seed3"
