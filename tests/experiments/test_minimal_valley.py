import pytest

from hessnoise import valley as V
from hessnoise.experiments import minimal_valley as mv
from hessnoise.scales import SCALES


def test_lemma1_sgd_is_invariant_under_rotation_and_shift():
    assert (
        mv.lemma1_invariance(V.trace_toy(), (2.0, 1.0), eta=0.05, kappa=0.03, steps=50, seed=1)
        < 1e-12
    )


def test_lemma2_holds_on_the_sphere_valley():
    assert mv.lemma2_residual(points=8) < 1e-12


def test_fdr_holds_at_large_eta():
    toy = V.trace_toy()
    res = mv.fdr(
        toy,
        V.HessianNoise(0.03),
        0.15,
        (2.0, 1.0),
        replicas=2048,
        relax_equil=10,
        relax_measure=60,
        seed=0,
    )
    # relative s.e. ≈ sqrt(2/(60·2048)) ≈ 0.4 %; 2 % is five of them.
    assert res.rel_err.max() < 0.02
    # ... while the O(η) truncation of eq. 11 is far off here (ηλ ≈ 1.2): the check is not trivial.
    lead = 0.15 * 0.03 / 2
    assert abs(res.theta_sq.max().item() / lead - 1) > 0.5


@pytest.mark.parametrize("scale", SCALES)
def test_configs_exist_for_every_scale(scale):
    cfg = mv.MinimalValleyConfig.for_scale(scale)
    assert cfg.replicas >= 1000 and 0 < cfg.kappa < 1


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="replicas=0"):
        mv.MinimalValleyConfig(replicas=0, etas=(0.1,), relax_equil=10, relax_measure=10)
    with pytest.raises(ValueError, match=r"etas\[0\]=-0.1"):
        mv.MinimalValleyConfig(replicas=10, etas=(-0.1,), relax_equil=10, relax_measure=10)


def test_fdr_summary_is_the_worst_gap_over_the_sweep():
    cfg = mv.MinimalValleyConfig(replicas=256, etas=(0.05, 0.15), relax_equil=2, relax_measure=5)
    results = mv.fdr_sweep(cfg, seed=0)
    summary = mv.summarize_fdr(results)
    assert len(results) == 3 * 2  # three noises, two learning rates
    assert summary.max_relerr == max(r.rel_err.max().item() for r in results)
    assert summary.eta_lam_max == max(r.eta * r.lam.max().item() for r in results)
    assert summary.max_relerr_conditional == max(
        (r.lhs / r.rhs_conditional - 1).abs().max().item() for r in results
    )
