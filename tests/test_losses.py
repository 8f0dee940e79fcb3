"""The label-smoothed cross-entropy: targets, their entropy (the loss floor), and PyTorch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hessnoise.losses import cross_entropy, smoothed_targets, target_entropy

F64 = torch.float64


@pytest.mark.parametrize(("eps", "k"), [(0.1, 10), (0.3, 4), (0.0, 10)])
def test_target_entropy_against_a_direct_computation(eps, k):
    q = smoothed_targets(torch.tensor([0, k - 1, 1]), k, eps)
    assert torch.allclose(q.sum(1), torch.ones(3, dtype=F64))
    direct = -(q * torch.where(q > 0, q.log(), torch.zeros_like(q))).sum(1)
    assert torch.allclose(direct, torch.full((3,), target_entropy(eps, k), dtype=F64))


def test_pytorch_label_smoothing_floor_is_the_target_entropy():
    # outputs log q interpolate the targets: PyTorch's loss is then exactly H(q), not 0
    y = torch.tensor([2, 0, 7, 7])
    q = smoothed_targets(y, 10, 0.1)
    loss = nn.CrossEntropyLoss(label_smoothing=0.1)(q.log(), y)
    assert abs(loss.item() - target_entropy(0.1)) < 1e-15


def test_probability_targets_equal_label_smoothing_values_and_hessians(gen):
    out = torch.randn(6, 10, dtype=F64, generator=gen)
    y = torch.randint(0, 10, (6,), generator=gen)
    q = smoothed_targets(y, 10, 0.1)
    smooth = nn.CrossEntropyLoss(label_smoothing=0.1)
    assert abs(cross_entropy(out, q) - smooth(out, y)) < 1e-14
    h_q = torch.autograd.functional.hessian(lambda o: cross_entropy(o, q), out)
    h_ref = torch.autograd.functional.hessian(lambda o: smooth(o, y), out)
    assert (h_q - h_ref).abs().max() < 1e-15


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="eps=1.0"):
        smoothed_targets(torch.tensor([0]), 10, 1.0)
    with pytest.raises(ValueError, match="n_classes=0"):
        target_entropy(0.1, 0)
