"""Toy valleys and noises against closed forms (SGD on them: test_valley_sgd.py; their exact
stationary statistics: test_valley_theory.py)."""

import math

import numpy as np
import pytest
import torch

from hessnoise import valley as V

F64 = torch.float64


def const_valley(lams):
    """A valley with constant eigenvalues ``lams`` and one θ̂ (used by the sibling tests)."""
    lam = torch.as_tensor(lams, dtype=F64)
    return V.Valley(lambda th: lam.expand(th.shape[0], -1) + 0 * th[:, :1], n=len(lams), m=1)


def test_paper_toys_closed_forms():
    th = torch.tensor([[2.0, 1.0], [0.3, -0.1]], dtype=F64)
    toy = V.trace_toy()
    np.testing.assert_allclose(toy.eigenvalues(th).numpy(), [[6.0, 8.0], [0.4, 0.2]])
    np.testing.assert_allclose(toy.lam_jacobian(th[:1]).numpy(), [[[2.0, 2.0], [2.0, 4.0]]])
    np.testing.assert_allclose(toy.spectral_grad(V.trace_fn, th[:1]).numpy(), [[4.0, 6.0]])
    toy2 = V.logdet_toy()
    a, b = 0.2, -0.3
    lam = toy2.eigenvalues(torch.tensor([[a, b]], dtype=F64))[0]
    np.testing.assert_allclose(
        lam.numpy(), [2 * (4 - 2 * math.exp(-a - b)), 2 * math.exp(-((a - b) ** 2))], rtol=1e-14
    )
    np.testing.assert_allclose(
        toy2.logdet(torch.tensor([[a, b]], dtype=F64)).item(), math.log(lam[0] * lam[1])
    )


def test_kappa_of_sgd_and_its_validation():
    assert V.kappa_sgd(10, 1000) == pytest.approx(0.1 * 0.99)
    assert V.kappa_sgd(1000, 1000) == 0.0
    with pytest.raises(ValueError, match="batch_size=0"):
        V.kappa_sgd(0, 100)
    with pytest.raises(ValueError, match="batch_size=101"):
        V.kappa_sgd(101, 100)


def test_designed_noise_covariance_and_sign_condition():
    lam = torch.tensor([[0.5, 3.0]], dtype=F64)
    noise = V.DesignedNoise(lambda l: (l**2).sum(-1), kappa=0.2)
    np.testing.assert_allclose(noise.covariance(lam).numpy(), (0.2 * 2 * lam**2).numpy())
    iso_like = V.DesignedNoise(V.logdet_fn, kappa=0.3)  # Corollary 2.1: C = κ·1
    np.testing.assert_allclose(iso_like.covariance(lam).numpy(), [[0.3, 0.3]])
    with pytest.raises(ValueError, match="∂f/∂λ_i ≥ 0"):
        V.DesignedNoise(lambda l: -l.sum(-1)).covariance(lam)


def test_bad_arguments():
    with pytest.raises(ValueError, match="n=0"):
        V.Valley(lambda th: th, n=0, m=1)
    with pytest.raises(ValueError, match=r"returned shape \(1, 2\); expected \(R, n\) = \(1, 3\)"):
        V.Valley(lambda th: th, n=3, m=2).trace(torch.zeros(1, 2, dtype=F64))
    with pytest.raises(ValueError, match="kappa=-1"):
        V.HessianNoise(-1)
    with pytest.raises(ValueError, match="dist='uniform'"):
        V.LabelNoise(0.1, dist="uniform")


def test_the_siblings_names_are_reexported():
    """Every public function and class of valley_sgd and valley_theory is reachable as V.name."""
    from hessnoise import valley_sgd, valley_theory

    for module in (valley_sgd, valley_theory):
        own = [
            name
            for name, obj in vars(module).items()
            if not name.startswith("_") and getattr(obj, "__module__", None) == module.__name__
        ]
        assert own
        for name in own:
            assert name in V.__all__ and getattr(V, name) is getattr(module, name), name
