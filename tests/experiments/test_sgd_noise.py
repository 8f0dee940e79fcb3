"""The chapter on SGD noise (Sec. 2.1.2–2.1.3, eq. 4, 5) against independent references:
per-sample gradients against autograd one sample at a time, eq. 4's terms against dense
autograd Hessians of the loss and of the softmax outputs, the exact mini-batch covariances
against enumeration of every batch and against Monte Carlo, the power-law fit against
synthetic noises with a known exponent, and the timescale counts against closed forms.

Tolerances: float64 identities hold to ~1e-12 relative (a few hundred rounding errors on
O(1) numbers); statistical checks use 4–5 standard errors.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from hessnoise import models, train
from hessnoise.experiments import floor as fl
from hessnoise.experiments import negative_eigenvalues as ne
from hessnoise.experiments import noise_covariance as nc
from hessnoise.experiments import sgd_noise as sn
from hessnoise.experiments import timescales as tsc
from hessnoise.losses import cross_entropy, target_entropy
from hessnoise.scales import SCALES
from hessnoise.stats import Interval

F64 = torch.float64
# A tiny network: 6 digits at 4×4, 5 hidden units (P = 16·5 + 5 + 5·10 + 10 = 145).
TINY = fl.FloorConfig(dataset="digits", n=6, size=4, hidden=5)
# One that interpolates: 10 digits, 16 hidden units (P = 442 > N(K − 1) = 90).
INTERP = fl.FloorConfig(dataset="digits", n=10, size=4, hidden=16, floor_iter=200)


@pytest.fixture(scope="module")
def tiny() -> fl.Problem:
    problem = fl.setup(TINY, 0, "cpu")
    # a state away from the initialization, so that no term is special
    gen = torch.Generator().manual_seed(3)
    theta = problem.theta_init + 0.3 * torch.randn(problem.n_params, generator=gen, dtype=F64)
    return replace(problem, theta_init=theta)


@pytest.fixture(scope="module")
def interpolating() -> tuple[fl.Problem, fl.Floor]:
    problem = fl.setup(INTERP, 0, "cpu")
    return problem, fl.find_floor(problem, INTERP, 0)


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", SCALES)
def test_configs_exist_for_every_scale(scale):
    cfg = sn.SGDNoiseConfig.for_scale(scale)
    ne_cfg = ne.NegativeEigenvaluesConfig.for_scale(scale)
    # the reference state is the last state of the run at the other chapter's centre η
    assert ne_cfg.eta0 in cfg.sgd_etas and cfg.batch_size == ne_cfg.batch_size0
    assert cfg.floor == ne_cfg.floor  # the same network, data and floor
    assert 0 < cfg.kappa < 1 / cfg.batch_size


def test_the_second_network_is_the_papers_196_30_10():
    second = sn.SGDNoiseConfig.for_scale("small").second
    assert (second.floor.n, second.floor.size, second.floor.hidden) == (500, 14, 30)
    assert models.n_params(models.mlp(14 * 14, [30], 10)) == second.floor.expected_params == 6220
    assert sn.SGDNoiseConfig.for_scale("paper").second is None  # there the main one is


@pytest.mark.parametrize(
    ("change", "match"),
    [({"levels": (0.1, 0.3)}, "levels=.*decreasing"), ({"batch_size": 50}, "batch_size=50"),
     ({"mc_batch_sizes": (5, 60)}, r"mc_batch_sizes\[1\]=60"), ({"gd_lr": 0.0}, "gd_lr=0.0"),
     ({"mc_draws": 5}, "mc_draws=5"), ({"separation": 0.5}, "separation=0.5")],
)  # fmt: skip
def test_config_refuses_bad_values_naming_them(change, match):
    base = sn.SGDNoiseConfig.for_scale("small")
    with pytest.raises(ValueError, match=match):
        replace(base, **change)


# --------------------------------------------------------------------------------------------
# The matrices at one θ against autograd
# --------------------------------------------------------------------------------------------
def test_per_sample_gradients_against_autograd_one_sample_at_a_time(tiny):
    theta = tiny.theta_init
    f = nc.noise_factors(tiny, theta)
    for k in range(tiny.n_samples):
        th = theta.clone().requires_grad_(True)
        loss = cross_entropy(tiny.net(th, tiny.x[k : k + 1]), tiny.q[k : k + 1])
        (ref,) = torch.autograd.grad(loss, th)
        assert torch.allclose(f.grads[k], ref, rtol=0, atol=1e-13 * ref.norm())
    assert torch.allclose(f.grads, tiny.sample_gradients(theta), atol=1e-13)
    # the factors' Gram matrices: the covariance (M − 1), the mean outer product (M)
    g = f.grads
    cov = torch.cov(g.T)  # normalized by M − 1, an independent implementation
    assert torch.allclose(nc.gram(f.cov), cov, atol=1e-13 * cov.norm())
    assert torch.allclose(nc.gram(f.outer), g.T @ g / g.shape[0], atol=1e-14)


def _logit_jacobian(problem: fl.Problem, theta: torch.Tensor) -> torch.Tensor:
    """(M, K, P) by torch.autograd.functional.jacobian, sample by sample."""
    rows = []
    for k in range(problem.n_samples):
        xk = problem.x[k : k + 1]
        rows.append(
            torch.autograd.functional.jacobian(lambda t, xk=xk: problem.net(t, xk)[0], theta)
        )
    return torch.stack(rows)


def test_eq4_terms_sum_to_the_dense_hessian(tiny):
    theta = tiny.theta_init
    m, p = tiny.n_samples, tiny.n_params
    ex = nc.exact(tiny, theta)
    h_ref = torch.autograd.functional.hessian(tiny.loss, theta)
    assert torch.allclose(ex.h, h_ref, atol=1e-12 * h_ref.norm())
    # R₄ = −(1/M) Σ_k Σ_c q_kc ∇²p_kc / p_kc, from dense Hessians of the softmax outputs
    r4 = torch.zeros(p, p, dtype=F64)
    for k in range(m):
        xk = tiny.x[k : k + 1]
        prob = tiny.net(theta, xk).softmax(-1)[0]
        hp = torch.func.hessian(lambda t, xk=xk: tiny.net(t, xk).softmax(-1)[0])(theta)  # (K,P,P)
        r4 -= torch.einsum("c,cpr->pr", tiny.q[k] / prob, hp) / m
    assert torch.allclose(ex.outer + ex.labels + r4, h_ref, atol=1e-11 * h_ref.norm())
    # F_q and G against the Jacobian of the logits
    jac = _logit_jacobian(tiny, theta)
    with torch.no_grad():
        prob = tiny.outputs(theta).softmax(-1)

    def gn(w: torch.Tensor) -> torch.Tensor:
        mid = torch.diag_embed(w) - w.unsqueeze(-1) * w.unsqueeze(-2)
        return torch.einsum("kap,kab,kbr->pr", jac, mid, jac) / m

    assert torch.allclose(ex.labels, gn(tiny.q), atol=1e-12 * ex.labels.norm())
    g = nc.gram(ex.factors.ggn)
    assert torch.allclose(g, gn(prob), atol=1e-12 * g.norm())
    # and the state's summary reads the same terms
    st = nc.analyse_state(tiny, nc.PathState("x", "descent", theta), 2, TINY.eps, ex=ex)
    a = ex.outer + ex.labels
    assert st.soft_second_term_ratio == pytest.approx(((h_ref - a).norm() / a.norm()).item())
    assert st.weyl_gap <= 1e-12  # A ⪰ 0: λ_i(H) ≥ λ_i(R₄)
    assert st.n_negative <= st.soft_n_negative and st.sum_negative >= st.soft_sum_negative


# --------------------------------------------------------------------------------------------
# The noise formulas against every possible mini-batch
# --------------------------------------------------------------------------------------------
def _batch_gradient(problem, theta, idx, targets):
    th = theta.clone().requires_grad_(True)
    loss = cross_entropy(problem.net(th, problem.x[list(idx)]), targets)
    return torch.autograd.grad(loss, th)[0]


@pytest.mark.parametrize("s", [1, 2, 4])
def test_paper_noise_is_exact_over_every_batch(tiny, s):
    theta, m = tiny.theta_init, tiny.n_samples
    grads = torch.stack(
        [_batch_gradient(tiny, theta, idx, tiny.q[list(idx)])
         for idx in itertools.combinations(range(m), s)]
    )  # fmt: skip
    exact_cov = torch.cov(grads.T, correction=0)  # every batch equally likely
    ex = nc.exact(tiny, theta)
    formula = ex.noise("paper", s) * (1 - s / m) / s
    assert torch.allclose(formula, exact_cov, atol=1e-12 * exact_cov.norm())


def test_sampled_label_noise_is_exact_over_every_batch_and_label(tiny):
    theta, m, s = tiny.theta_init, tiny.n_samples, 2
    # the gradient of −log p_c(x_k) for every sample and label, one autograd call each; a
    # batch's gradient is the mean of its members' (the loss is a mean)
    single = torch.stack([
        torch.stack([_batch_gradient(tiny, theta, (k,), torch.eye(10, dtype=F64)[c : c + 1])
                     for c in range(10)])
        for k in range(m)
    ])  # fmt: skip
    grads, weights = [], []
    for idx in itertools.combinations(range(m), s):
        for labels in itertools.product(range(10), repeat=s):
            grads.append(sum(single[k, c] for k, c in zip(idx, labels, strict=True)) / s)
            weights.append(math.prod(tiny.q[k, c].item() for k, c in zip(idx, labels, strict=True)))
    g, w = torch.stack(grads), torch.tensor(weights, dtype=F64)
    w = w / w.sum()
    mean = w @ g
    exact_cov = (g - mean).T @ ((g - mean) * w.unsqueeze(1))
    ex = nc.exact(tiny, theta)
    formula = ex.noise("sampled", s) / s
    assert torch.allclose(mean, torch.func.grad(tiny.loss)(theta), atol=1e-13)  # unbiased
    assert torch.allclose(formula, exact_cov, atol=1e-12 * exact_cov.norm())


def test_monte_carlo_check_agrees_and_would_catch_a_wrong_factor(tiny):
    st = nc.PathState("x", "descent", tiny.theta_init)
    checks = nc.minibatch_checks(tiny, st, (2, 4), 4000, seed=1)
    assert len(checks) == 4
    # 4 checks × 12 z-scores; a false alarm above 5 has probability ~3e-5
    assert max(c.z_max for c in checks) < 5
    for c in checks:
        assert c.trace.value == pytest.approx(c.trace_exact, rel=6 * c.trace.se / c.trace.value)
    # the batch gradients are the mean of per-sample gradients: the factor 1 − S/M matters,
    # and at S = 4 of M = 6 leaving it out would shift tr Ĉ by 1/(1 − 2/3) − 1 = 200 %
    paper = next(c for c in checks if c.protocol == "paper" and c.batch_size == 4)
    wrong = paper.trace_exact * 3
    assert abs(paper.trace.value - wrong) / paper.trace.se > 10


# --------------------------------------------------------------------------------------------
# The comparison with H and the fit of γ
# --------------------------------------------------------------------------------------------
def _synthetic(lam: np.ndarray, gamma: float, noise: float, seed: int):
    rng = np.random.default_rng(seed)
    p = lam.size
    q, _ = np.linalg.qr(rng.standard_normal((p, p)))
    powers = lam**gamma * np.exp(noise * rng.standard_normal(p))
    h = torch.from_numpy((q * lam) @ q.T)
    c = torch.from_numpy((q * powers) @ q.T)
    h, c = (h + h.T) / 2, (c + c.T) / 2
    lam_t, vec = torch.linalg.eigh(h)
    return c, h, lam_t, vec, powers


@pytest.mark.parametrize("gamma", [0.5, 1.0, 1.7])
def test_gamma_fit_recovers_a_known_exponent(gamma):
    lam = np.logspace(-6, 1, 60)
    c, h, lam_t, vec, _ = _synthetic(lam, gamma, 0.0, 0)
    fit, _ = nc.compare(c, h, lam_t, vec, cut=1e-12, rank=60)
    assert fit.gamma.value == pytest.approx(gamma, abs=1e-6)
    assert fit.n_fit == 60 and fit.scatter < 1e-6
    # closed forms of the alignment and the trace ratio of C = H^γ
    expect = (lam ** (1 + gamma)).sum() / math.sqrt((lam ** (2 * gamma)).sum() * (lam**2).sum())
    assert fit.alignment == pytest.approx(expect, rel=1e-9)
    assert fit.kappa_ratio == pytest.approx((lam**gamma).sum() / lam.sum(), rel=1e-9)
    assert nc.eq5_holds(fit) == (gamma == 1.0)


def test_gamma_interval_covers_the_true_exponent_at_its_level():
    lam = np.logspace(-4, 0, 40)
    trials, hits = 200, 0
    for seed in range(trials):
        c, h, lam_t, vec, _ = _synthetic(lam, 1.3, 0.5, seed)
        fit, _ = nc.compare(c, h, lam_t, vec, cut=1e-12, rank=40)
        hits += fit.gamma.contains(1.3)
    # binomial s.e. of a 95 % coverage over 200 trials: 1.5 %; allow 4 of them
    assert abs(hits / trials - 0.95) < 0.062


def test_directions_below_the_cut_are_left_out_and_counted():
    lam = np.logspace(-15, 0, 30)
    c, h, lam_t, vec, _ = _synthetic(lam, 2.0, 0.0, 1)
    fit, _ = nc.compare(c, h, lam_t, vec, cut=1e-10, rank=30)
    above = lam > 1e-10
    reached = above & (lam**2 > 1e-10)
    assert fit.n_fit == reached.sum() and fit.n_unreached == (above & ~reached).sum()
    assert fit.gamma.value == pytest.approx(2.0, abs=1e-6)


def test_a_vanishing_noise_has_no_alignment_or_exponent():
    lam = np.logspace(-3, 0, 10)
    _, h, lam_t, vec, _ = _synthetic(lam, 1.0, 0.0, 2)
    fit, _ = nc.compare(1e-30 * torch.eye(10, dtype=F64), h, lam_t, vec, cut=1e-12, rank=10)
    assert fit.vanishes and math.isnan(fit.alignment) and math.isnan(fit.gamma.value)
    assert not nc.eq5_holds(fit)


def test_rank_ceiling_bounds_the_alignment_and_is_attained():
    lam = np.logspace(-3, 0, 12)
    rng = np.random.default_rng(4)
    _, h, lam_t, vec, _ = _synthetic(lam, 1.0, 0.0, 3)
    r = 3
    for _ in range(20):  # random positive semi-definite matrices of rank r
        x = torch.from_numpy(rng.standard_normal((r, 12)))
        fit, _ = nc.compare(x.T @ x, h, lam_t, vec, cut=1e-12, rank=r)
        assert fit.alignment <= fit.ceiling + 1e-12
    top = vec[:, -r:]
    best, _ = nc.compare(top @ torch.diag(lam_t[-r:]) @ top.T, h, lam_t, vec, cut=1e-12, rank=r)
    assert best.alignment == pytest.approx(best.ceiling, rel=1e-12)


def test_leading_eigenpairs_against_the_full_decomposition():
    lam = np.logspace(-3, 1, 40)
    _, h, lam_t, vec, _ = _synthetic(lam, 1.0, 0.0, 5)
    top_lam, top_vec = nc.leading_eigenpairs(h, 5)
    assert torch.allclose(top_lam, lam_t[-5:], rtol=1e-10)
    assert torch.allclose((top_vec.T @ vec[:, -5:]).abs(), torch.eye(5, dtype=F64), atol=1e-8)


# --------------------------------------------------------------------------------------------
# At an interpolating floor (the propositions)
# --------------------------------------------------------------------------------------------
def test_at_an_interpolating_floor_sampled_labels_give_h_over_s(interpolating):
    problem, floor = interpolating
    assert floor.rank == INTERP.n_constraints  # it interpolates
    st = nc.analyse_state(problem, nc.PathState("floor", "floor", floor.theta), 5, INTERP.eps)
    assert st.paper.vanishes and st.paper.kappa_ratio < 1e-20
    assert st.sampled_residual < 1e-9 and st.soft_second_term_ratio < 1e-9
    assert st.ggn_residual_ratio < 1e-9
    assert st.sampled.gamma.value == pytest.approx(1.0, abs=1e-8)
    assert st.sampled.n_fit == floor.rank  # every non-degenerate direction, nothing below


def test_near_the_floor_the_papers_noise_is_second_order(interpolating):
    # proposition (i): tr Ĉ_mb/tr H ∝ |δ|², so halving δ divides it by 4
    problem, floor = interpolating
    gen = torch.Generator().manual_seed(0)
    d = floor.basis @ torch.randn(floor.basis.shape[1], generator=gen, dtype=F64)
    d = 1e-4 * d / d.norm()
    ratios = []
    for scale in (1.0, 0.5):
        theta = floor.theta + scale * d
        cov = nc.gram(nc.noise_factors(problem, theta).cov)
        ratios.append((torch.trace(cov) / torch.trace(problem.hessian(theta))).item())
    assert ratios[0] / ratios[1] == pytest.approx(4.0, rel=1e-3)


# --------------------------------------------------------------------------------------------
# The path
# --------------------------------------------------------------------------------------------
def test_descent_hits_its_levels_and_is_one_gradient_descent_run(tiny):
    states = sn.descent(tiny, 0.5, 400, (1.0, 0.6, 0.4), TINY.eps)
    excess = [tiny.loss_value(s.theta) - target_entropy(TINY.eps) for s in states]
    assert states[0].label == "init"
    for level, e in zip((1.0, 0.6, 0.4), excess[1:], strict=False):
        assert e <= level
    assert all(a > b for a, b in itertools.pairwise(excess))
    # one uninterrupted run of the same number of steps ends at the same θ, bit for bit
    last = states[-1]
    ref = train.gradient_descent(tiny.loss, tiny.theta_init, lr=0.5, steps=last.steps)
    assert torch.equal(ref.theta, last.theta)


def test_sgd_states_resume_from_their_checkpoints(interpolating, tmp_path):
    problem, floor = interpolating
    cfg = replace(sn.SGDNoiseConfig.for_scale("smoke"), floor=INTERP, batch_size=5,
                  sgd_etas=(0.1,), tau_equil=2, tau_between=1, sgd_states=2,
                  mc_batch_sizes=(5,), checkpoint_every=7)  # fmt: skip
    first = sn.sgd_states(problem, floor, cfg, 0, tmp_path)
    again = sn.sgd_states(problem, floor, cfg, 0, tmp_path)  # read back
    fresh = sn.sgd_states(problem, floor, cfg, 0, None)
    assert [s.steps for s in first] == [30, 40] and [s.tau for s in first] == pytest.approx([3, 4])
    for a, b, c in zip(first, again, fresh, strict=True):
        assert torch.equal(a.theta, b.theta) and torch.equal(a.theta, c.theta)
    assert (first[0].theta - floor.theta).norm() > 0  # sampled labels move off the floor


def test_summary_and_reference_state():
    def fake(kind, eta, align, kappa, gamma):
        fit = nc.NoiseFit(align, kappa, Interval(gamma, gamma - 0.01, gamma + 0.01), 10, 0, 0.1,
                          1.0, 5, 1.0, False)  # fmt: skip
        return nc.StateAnalysis(
            "s", kind, eta, math.nan, 1.0, 0.1, 2.0, 1.0, 1e-10, fit, fit, 0.5, 2.0, 0.5, 0.1,
            0.2, 3, -0.1, 5, -0.3, -1e-17, np.ones(3), np.ones(3), np.ones(3),
        )  # fmt: skip

    states = [fake("descent", math.nan, 0.95, 1.0, 1.0), fake("floor", math.nan, 1, 1, 1),
              fake("sgd", 0.05, 0.5, 0.01, 1.0), fake("sgd", 0.1, 0.95, 1.5, 1.02)]  # fmt: skip
    facts = sn.summary(states)
    assert facts["descent_paper_eq5"] and not facts["sgd_paper_eq5"]
    assert facts["sgd_paper_eq5_states"] == 1
    assert facts["sgd_negative_share_max"] == pytest.approx(1 / 3)
    assert sn.reference(states, 0.1) is states[3]
    with pytest.raises(ValueError, match="eta=0.2"):
        sn.reference(states, 0.2)


# --------------------------------------------------------------------------------------------
# Timescales
# --------------------------------------------------------------------------------------------
def _run(eta, trace, end_floor_trace, cfg):
    snaps = len(trace)
    zeros = torch.zeros(snaps, dtype=F64)
    equil, block, _ = ne.schedule(cfg.tau_equil, cfg.tau_measure, eta, snaps, cfg.loss_points)
    return ne.RunResult(
        "sampled-labels", eta, cfg.batch_size0, 1 / cfg.batch_size0, eta / 4 / cfg.batch_size0,
        equil + snaps * block, zeros, zeros.unsqueeze(1), zeros, torch.tensor(trace), zeros,
        zeros, zeros, zeros, end_floor_trace=end_floor_trace,
    )  # fmt: skip


def test_drift_rate_of_a_linear_trend_and_the_floor_projection():
    cfg = ne.NegativeEigenvaluesConfig.for_scale("small")
    eta, rate = 0.05, -2e-4
    run = _run(eta, [0.0] * 10, 0.0, cfg)
    tau = tsc.snapshot_times(run, cfg)
    assert tau[-1] == pytest.approx(eta * run.steps)  # the last snapshot ends the run
    trace = 20.0 * (1 + rate * tau)
    run = _run(eta, list(trace), 20.0 * (1 + rate * tau[-1]), cfg)
    d = tsc.drift(run, cfg, 20.0)
    assert d.snapshot_rate.value == pytest.approx(rate, rel=1e-9)
    assert d.rate == pytest.approx(rate, rel=1e-9)
    assert d.tau_drift == pytest.approx(1 / abs(rate), rel=1e-9)
    # Theorem 1's law: rates proportional to 𝒞 give slope −a and intercept 0
    law = tsc.drift_law([replace(d, C=c, rate=-0.3 * c) for c in (1e-4, 5e-4, 2e-3)])
    assert law.slope == pytest.approx(-0.3) and abs(law.intercept) < 1e-15


def test_timescale_counts_against_the_spectrum(interpolating):
    _, floor = interpolating
    cfg = ne.NegativeEigenvaluesConfig.for_scale("small")
    lam = floor.eigenvalues.numpy()
    nondeg = lam[lam > floor.zero_tol]
    d = tsc.Drift(0.05, 10, 1e-3, -1e-3, 1000.0, Interval(-1e-3, -1.1e-3, -0.9e-3))
    ts = tsc.timescales(floor, [d], d, [], cfg, 10.0)
    assert ts.n == nondeg.size == floor.rank
    assert ts.slow_directions == (1 / nondeg > cfg.tau_equil).sum()
    assert ts.slow_drift_directions == (1 / nondeg > 100.0).sum()
    assert ts.gap == pytest.approx(nondeg.min()) and ts.split_decades > 3
    assert ts.separated == (ts.slow_drift_directions == 0)
    relax = tsc.relaxation_times(floor)
    assert relax[0] == pytest.approx(1 / nondeg.max()) and np.all(np.diff(relax) >= 0)
