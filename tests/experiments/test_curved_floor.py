"""The sum of negative eigenvalues near flat and curved valley floors, against closed forms
and simulation, and the probe of the curved floor on the tiny network."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from hessnoise.curvature import spectrum
from hessnoise.experiments import curved_floor as cf

F64 = torch.float64


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


def test_probe_on_the_tiny_network(tiny, tiny_sweep):
    cfg, problem, floor = tiny
    probe = cf.curvature_probe(problem, floor, (1e-8, 1e-4), 0)
    assert probe.null_dim == problem.n_params - cfg.floor.n_constraints
    assert probe.fd_relerr < 1e-5 and probe.shape_ratio > 1e3 * probe.fd_relerr
    # first order in √𝒞 is exact as 𝒞 → 0
    assert probe.linear_share[0] == pytest.approx(1.0, abs=0.02)
    at = cf.at_runs(probe, 1e-8, 1e-4)
    assert at.floor_share_lo == pytest.approx(probe.floor_share[0])
    assert at.floor_share_lo + at.soft_share_lo + at.higher_share_lo == pytest.approx(1.0)
    sw = tiny_sweep
    assert np.isnan(cf.probe_deviation(dataclasses.replace(probe, cs=probe.cs * 1e-6), sw))


def test_probe_refuses_unordered_noise_scales():
    with pytest.raises(ValueError, match="cs=.*increasing"):
        cf.CurvedFloorConfig((1e-4, 1e-8))
