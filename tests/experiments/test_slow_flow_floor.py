"""The floor of the tiny_flow network from its logits, against independent references: the
Gauss–Newton landing's frame and trace against the dense Hessian, and its move along the floor
to second order only."""

from __future__ import annotations

import pytest
import torch
from slow_flow_tiny import TINY_FLOOR

from hessnoise.experiments import slow_flow_floor as sff

F64 = torch.float64


def test_landing_reaches_the_floor_and_its_frame_is_the_dense_one(tiny_flow):
    pb, pred = tiny_flow.problem, tiny_flow.pred
    assert sff.logit_residual(pb, pred.theta).abs().max() <= sff.RESIDUAL_TOL
    frame = sff.landing(pb)(pred.theta)
    lam, vec = torch.linalg.eigh(pb.hessian(pred.theta))  # HessianOperator: independent
    n = TINY_FLOOR.n_constraints
    assert frame.rank == n and lam[-n - 1].abs() < 1e-10 * lam[-1]
    torch.testing.assert_close(frame.lam, lam[-n:], rtol=1e-7, atol=1e-11 * lam[-1].item())
    proj_dense = vec[:, -n:] @ vec[:, -n:].T
    torch.testing.assert_close(frame.normal @ frame.normal.T, proj_dense, rtol=0, atol=1e-7)
    landing = sff.gauss_newton_to_floor(pb, pred.theta)
    assert sff.floor_trace(pb, landing) == pytest.approx(torch.trace(pb.hessian(pred.theta)).item(),
                                                        rel=1e-10)  # fmt: skip


def test_gauss_newton_moves_along_the_normal_space_to_first_order(tiny_flow):
    pb, pred = tiny_flow.problem, tiny_flow.pred
    frame = sff.landing(pb)(pred.theta)
    gen = torch.Generator().manual_seed(0)
    n = frame.normal @ torch.randn(frame.rank, generator=gen, dtype=F64)
    n = n / n.norm()
    moves = [frame.tangent(sff.gauss_newton_to_floor(pb, pred.theta + e * n).theta - pred.theta)
             .norm().item() for e in (0.02, 0.01)]  # fmt: skip
    assert moves[0] / moves[1] == pytest.approx(4, rel=0.1)  # O(ε²): second order only


def test_gauss_newton_gives_up_naming_the_residual(tiny_flow):
    with pytest.raises(RuntimeError, match="did not reach the floor"):
        sff.gauss_newton_to_floor(tiny_flow.problem, tiny_flow.problem.theta_init, max_iter=1)
