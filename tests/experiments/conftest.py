"""Fixtures of the experiment tests."""

from __future__ import annotations

import pytest
from tiny_network import TINY, TINY_FLOOR

from hessnoise.experiments import floor as fl


@pytest.fixture(scope="session")
def tiny():
    """(config, problem, floor) of the tiny Section 4.1 network (see tiny_network.py)."""
    problem = fl.setup(TINY_FLOOR, 0, "cpu")
    return TINY, problem, fl.find_floor(problem, TINY_FLOOR, 0)
