"""Hutchinson and Hutch++ against exact traces: unbiasedness, honest standard errors,
Hutch++'s variance advantage, and the stopping rules."""

import pytest
import torch

from hessnoise import models
from hessnoise.curvature import HessianOperator, dense_matvec, hessian_matrix, hutchinson, hutchpp

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
