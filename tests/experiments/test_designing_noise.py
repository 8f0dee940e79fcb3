import dataclasses
import math

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
    cfg = dn.DesigningNoiseConfig(
        replicas=256, steps=300, record_every=100, kappa=0.02, early_steps=100
    )
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


def test_start_lattice_is_fixed_in_advance_and_stays_in_the_valley():
    starts = dn.start_lattice()
    assert len(starts) >= 12 and len(set(starts)) == len(starts)
    assert (0.5, -0.5) not in starts  # the selected start is not part of the grid
    lam = V.logdet_toy().eigenvalues(torch.tensor(starts, dtype=torch.float64))
    assert (lam > 0).all()


def test_predicted_winner_follows_the_efficiencies():
    cfg = dn.DesigningNoiseConfig(replicas=16)
    eff = dn.efficiencies(cfg, cfg.theta_hat0)
    win = dn.predicted_winner(eff)
    assert win == {
        f: ("SGD" if eff[f, "SGD"] < eff[f, "isotropic"] else "isotropic") for f in dn.TRACKED
    }


def test_grid_race_agrees_with_a_race_from_the_same_start():
    # simulation against simulation: the batched grid at one start against an independent
    # measurement there with more replicas (different random streams)
    cfg = dn.DesigningNoiseConfig(replicas=1024, grid_replicas=512, steps=300, record_every=100,
                                  early_steps=100, kappa=0.02)  # fmt: skip
    grid = dn.grid_race(cfg, seed=3)
    summary = dn.summarize_grid(grid, cfg)
    assert summary.starts == len(dn.start_lattice()) and summary.comparisons == 2 * summary.starts
    j = 5
    start = grid[j].theta_hat0
    single = dn.race(dataclasses.replace(cfg, theta_hat0=start), seed=4)
    ref = dn.race_outcome(single)
    for f in dn.TRACKED:
        for n in dn.NOISES:
            a, b = grid[j].late.delta[f][n], ref.delta[f][n]
            assert abs(a.value - b.value) < 4 * math.hypot(a.se, b.se), (f, n)
