"""Hutchinson and Hutch++ against exact traces: unbiasedness, honest standard errors,
Hutch++'s variance advantage, and the stopping rules."""

import pytest
import torch

from hessnoise import models
from hessnoise.curvature import (
    HessianOperator,
    dense_matvec,
    hessian_matrix,
    hutchinson,
    hutchpp,
    hutchpp_groups,
)

F64 = torch.float64


def spiked(dim=60, outliers=(400.0, 250.0, 120.0), seed=0):
    """A symmetric matrix with a few large eigenvalues over a bulk in [−1, 1]."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=F64))
    lam = torch.rand(dim, generator=gen, dtype=F64) * 2 - 1
    lam[: len(outliers)] = torch.tensor(outliers, dtype=F64)
    return (q * lam) @ q.T


@pytest.mark.parametrize("estimator", [hutchinson, hutchpp])
def test_unbiased_within_three_standard_errors(estimator):
    a = spiked()
    exact = torch.trace(a).item()
    values = torch.tensor(
        [estimator(dense_matvec(a), 60, budget=18, seed=s).value for s in range(400)]
    )
    se = values.std().item() / 400**0.5
    assert abs(values.mean().item() - exact) < 3 * se


@pytest.mark.parametrize("estimator", [hutchinson, hutchpp])
def test_reported_standard_error_is_honest(estimator):
    """The reported s.e. of one run matches the spread of the estimate over seeds."""
    a = spiked()
    runs = [estimator(dense_matvec(a), 60, budget=48, seed=s) for s in range(300)]
    spread = torch.tensor([r.value for r in runs]).std().item()
    reported = torch.tensor([r.se for r in runs]).pow(2).mean().sqrt().item()
    assert 0.75 < reported / spread < 1.33  # 300 seeds: the std of the spread is ~4 %


def test_hutchpp_beats_hutchinson_on_outliers():
    a = spiked()
    mv = dense_matvec(a)
    var_h = torch.tensor([hutchinson(mv, 60, budget=30, seed=s).value for s in range(300)]).var()
    var_pp = torch.tensor([hutchpp(mv, 60, budget=30, seed=s).value for s in range(300)]).var()
    assert var_pp < 0.1 * var_h


def test_hutchinson_variance_matches_closed_form():
    """Var = 2(‖A‖_F² − Σ A_ii²)/m for Rademacher probes."""
    a = spiked(dim=30, outliers=(10.0,))
    m = 8
    theory = 2 * ((a**2).sum() - (torch.diagonal(a) ** 2).sum()).item() / m
    values = torch.tensor(
        [hutchinson(dense_matvec(a), 30, budget=m, seed=s).value for s in range(2000)]
    )
    assert abs(values.var().item() / theory - 1) < 0.1  # 2000 samples: ~3 % s.e. of a variance


@pytest.mark.parametrize(
    ("estimator", "loose_se", "tight_se"), [(hutchinson, 40.0, 10.0), (hutchpp, 2.0, 0.5)]
)
def test_target_standard_error_stopping(estimator, loose_se, tight_se):
    a = spiked()
    loose = estimator(dense_matvec(a), 60, target_se=loose_se, seed=0, block=8)
    tight = estimator(dense_matvec(a), 60, target_se=tight_se, seed=0, block=8)
    assert loose.converged and tight.converged
    assert loose.se <= loose_se and tight.se <= tight_se
    assert tight.n_matvecs > loose.n_matvecs
    capped = estimator(dense_matvec(a), 60, target_se=1e-6, seed=0, block=8, max_matvecs=64)
    assert not capped.converged and capped.n_matvecs <= 64


def test_seeds_and_generators_reproduce():
    a = spiked()
    one = hutchinson(dense_matvec(a), 60, budget=20, seed=5)
    two = hutchinson(dense_matvec(a), 60, budget=20, generator=torch.Generator().manual_seed(5))
    assert one == two and one.seed == 5 and one.n_matvecs == 20
    assert hutchpp(dense_matvec(a), 60, budget=21, seed=1).n_matvecs == 21


def test_estimators_refuse_ambiguous_arguments():
    mv = dense_matvec(spiked())
    with pytest.raises(ValueError, match="exactly one of budget="):
        hutchinson(mv, 60, seed=0)
    with pytest.raises(ValueError, match="exactly one of budget="):
        hutchinson(mv, 60, budget=10, target_se=0.1, seed=0)
    with pytest.raises(ValueError, match="exactly one of seed= or generator="):
        hutchinson(mv, 60, budget=10)
    with pytest.raises(ValueError, match="budget=2 is out of range"):
        hutchpp(mv, 60, budget=2, seed=0)


def test_trace_of_a_network_hessian():
    torch.manual_seed(0)
    net = models.mlp(5, [8], 3, seed=0)
    x, y = torch.randn(40, 5, dtype=F64), torch.randint(0, 3, (40,))
    op = HessianOperator(net, torch.nn.CrossEntropyLoss(), (x, y))
    exact = torch.trace(hessian_matrix(op)).item()
    est = hutchpp(op, op.dim, budget=op.dim, seed=0)  # sketch of a third of the space
    assert abs(est.value - exact) < 4 * est.se + 1e-9
    full = hutchpp(op, op.dim, budget=3 * op.dim, seed=0)  # sketch spans the space: exact
    assert abs(full.value - exact) < 1e-10 * abs(exact) and full.se == 0.0


def test_grouped_hutchpp_is_hutchpp_probe_for_probe():
    a = spiked()
    labels = torch.arange(60) % 4
    for budget in (9, 30):
        plain = hutchpp(dense_matvec(a), 60, budget=budget, seed=5)
        grouped = hutchpp_groups(dense_matvec(a), 60, labels, budget=budget, seed=5)
        total = grouped.combine()
        assert total.value == pytest.approx(plain.value, rel=1e-12)
        assert total.se == pytest.approx(plain.se, rel=1e-9)
        assert total.n_matvecs == plain.n_matvecs == budget


def test_grouped_hutchpp_block_traces_are_unbiased_and_weighted_sums_exact_at_full_sketch():
    a = spiked()
    labels = torch.arange(60) // 20  # three blocks of 20 coordinates
    exact = torch.stack([a.diagonal()[labels == g].sum() for g in range(3)])
    full = hutchpp_groups(dense_matvec(a), 60, labels, budget=180, seed=0)
    assert torch.allclose(full.values, exact, atol=1e-9)
    w = torch.tensor([4.0, 1.0, 0.25], dtype=F64)
    assert full.combine(w).value == pytest.approx((w * exact).sum().item(), rel=1e-10)
    assert full.combine(w).se == 0.0
    runs = [hutchpp_groups(dense_matvec(a), 60, labels, budget=18, seed=s) for s in range(400)]
    values = torch.stack([r.values for r in runs])
    se = values.std(0) / 400**0.5
    assert ((values.mean(0) - exact).abs() < 4 * se).all()
    weighted = torch.tensor([r.combine(w).value for r in runs])
    reported = torch.tensor([r.combine(w).se for r in runs]).pow(2).mean().sqrt()
    assert 0.7 < reported.item() / weighted.std().item() < 1.4  # 400 seeds, 6 probes each


def test_grouped_hutchpp_refuses_bad_labels():
    with pytest.raises(ValueError, match="labels must be int64 of shape"):
        hutchpp_groups(dense_matvec(spiked()), 60, torch.zeros(59, dtype=torch.int64), budget=9,
                       seed=0)  # fmt: skip
