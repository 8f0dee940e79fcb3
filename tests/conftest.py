"""Shared fixtures.  Tests run in float64 unless they test float32 on purpose."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(1234)
