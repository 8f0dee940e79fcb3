"""Lanczos extremes and stochastic Lanczos quadrature against eigvalsh."""

import numpy as np
import pytest
import torch

from hessnoise import models
from hessnoise.curvature import (
    HessianOperator,
    dense_matvec,
    extreme_eigenvalues,
    hessian_matrix,
    lanczos,
    slq,
)

F64 = torch.float64


def symmetric(dim=120, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=F64))
    lam = torch.cat(
        [
            torch.tensor([50.0, 30.0, 20.0, -8.0, -5.0], dtype=F64),
            torch.randn(dim - 5, generator=gen, dtype=F64),
        ]
    )
    return (q * lam) @ q.T, lam.sort().values


def test_extremes_agree_with_eigvalsh_within_residual_bounds():
    a, lam = symmetric()
    ext = extreme_eigenvalues(dense_matvec(a), 120, k=3, steps=60, seed=0)
    np.testing.assert_allclose(ext.largest.numpy(), lam.flip(0)[:3].numpy(), atol=1e-8)
    np.testing.assert_allclose(ext.smallest.numpy(), lam[:3].numpy(), atol=1e-8)
    for ritz, bound in zip(ext.largest, ext.largest_residual, strict=True):
        assert (lam - ritz).abs().min() <= bound + 1e-12  # a Ritz value is within its residual
    assert ext.n_matvecs == 60


def test_full_reorthogonalization_keeps_the_basis_orthonormal():
    a, _ = symmetric()
    res = lanczos(dense_matvec(a), 120, 80, seed=1)
    gram = res.basis @ res.basis.T
    assert (gram - torch.eye(res.steps, dtype=F64)).abs().max() < 1e-12
    t = res.basis @ a @ res.basis.T  # T_m = Qᵀ A Q
    assert torch.allclose(t, res.tridiagonal(), atol=1e-10)


def test_lanczos_stops_at_an_invariant_subspace():
    a = torch.diag(torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=F64))
    res = lanczos(dense_matvec(a), 4, 4, start=torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=F64))
    assert res.steps == 2 and res.beta_last == 0.0
    assert torch.allclose(res.ritz()[0], torch.tensor([1.0, 2.0], dtype=F64))


def test_extremes_of_a_network_hessian():
    torch.manual_seed(0)
    net = models.mlp(6, [7], 3, seed=4)
    x, y = torch.randn(50, 6, dtype=F64), torch.randint(0, 3, (50,))
    op = HessianOperator(net, torch.nn.CrossEntropyLoss(), (x, y))
    ref = torch.linalg.eigvalsh(hessian_matrix(op))
    ext = extreme_eigenvalues(op, op.dim, k=2, steps=op.dim, seed=0)
    np.testing.assert_allclose(ext.largest.numpy(), ref.flip(0)[:2].numpy(), rtol=1e-9)
    np.testing.assert_allclose(ext.smallest.numpy(), ref[:2].numpy(), atol=1e-10)


def test_slq_is_exact_for_low_degree_moments():
    """With m steps, v's quadrature integrates polynomials of degree ≤ 2m−1 exactly."""
    a, _ = symmetric(dim=40)
    q = slq(dense_matvec(a), 40, n_vectors=3, steps=6, seed=0)
    gen = torch.Generator().manual_seed(0)
    v = (2 * torch.randint(0, 2, (3, 40), generator=gen) - 1).to(F64)  # the same probes
    for power in (1, 2, 3):
        vav = torch.einsum("ki,ij,kj->k", v, torch.linalg.matrix_power(a, power), v) / 40
        np.testing.assert_allclose(
            (q.weights * q.nodes**power).sum(1).numpy(), vav.numpy(), rtol=1e-9
        )


def test_slq_density_and_trace():
    a, lam = symmetric(dim=80)
    q = slq(dense_matvec(a), 80, n_vectors=200, steps=30, seed=2)
    grid = torch.linspace(-15, 60, 3001, dtype=F64)
    dens = q.density(grid, sigma=0.5)
    assert abs(torch.trapezoid(dens, grid).item() - 1) < 1e-6
    est = torch.tensor([80 * (q.weights[i] * q.nodes[i]).sum() for i in range(200)])
    assert abs(est.mean() - lam.sum()) < 4 * est.std() / 200**0.5  # unbiased trace
    assert q.trace_of(lambda t: t) == pytest.approx(est.mean().item())


def test_bad_arguments():
    a, _ = symmetric(dim=10)
    with pytest.raises(ValueError, match="steps=11 is out of range"):
        lanczos(dense_matvec(a), 10, 11, seed=0)
    with pytest.raises(ValueError, match="which='middle'"):
        extreme_eigenvalues(dense_matvec(a), 10, 2, which="middle", seed=0)
    with pytest.raises(ValueError, match="exactly one of seed= or generator="):
        lanczos(dense_matvec(a), 10, 3)
