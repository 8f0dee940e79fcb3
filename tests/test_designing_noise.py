import pytest
import torch

from hessnoise import valley as V
from hessnoise.experiments import designing_noise as dn
from hessnoise.scales import SCALES


@pytest.mark.parametrize("scale", SCALES)
def test_configs(scale):
    cfg = dn.DesigningNoiseConfig.for_scale(scale)
    lam = V.logdet_toy().eigenvalues(V.replicas(cfg.theta_hat0, 1))
    assert (cfg.eta * lam < 2).all() and cfg.replicas >= 1000


def test_config_validation():
    with pytest.raises(ValueError, match="eta=0"):
        dn.DesigningNoiseConfig(replicas=10, eta=0)


def test_tiny_race_records_both_noises():
    cfg = dn.DesigningNoiseConfig(replicas=256, steps=300, record_every=100, kappa=0.02)
    race = dn.race(cfg, seed=0)
    assert len(race) == 2
    for _noise, m in race.values():
        assert set(m.delta) == {"trace", "logdet"} and m.trajectory["trace"].shape == (4, 256)
        for f in ("trace", "logdet"):
            gap = (m.delta[f] - m.predicted[f]).mean().abs()
            se = (m.delta[f] - m.predicted[f]).std() / 16
            assert gap < 5 * se + 1e-3 * m.predicted[f].mean().abs()


def test_user_function_needs_nonnegative_derivatives():
    cfg = dn.DesigningNoiseConfig(replicas=16, user_steps=5)
    with pytest.raises(ValueError, match="∂f/∂λ_i ≥ 0"):
        dn.user_function(lambda lam: -lam.sum(-1), cfg, seed=0)
    noise, _m = dn.user_function(lambda lam: (lam**2).sum(-1), cfg, seed=0)
    lam = V.logdet_toy().eigenvalues(V.replicas(cfg.theta_hat0, 1))
    assert torch.allclose(noise.covariance(lam), 2 * cfg.user_kappa * lam**2)
