"""Fixtures of the experiment tests."""

from __future__ import annotations

import pytest
from slow_flow_tiny import tiny_config
from tiny_network import TINY, TINY_FLOOR

from hessnoise.experiments import floor as fl
from hessnoise.experiments import negative_eigenvalues as ne
from hessnoise.experiments import slow_flow as sf


@pytest.fixture(scope="session")
def tiny():
    """(config, problem, floor) of the tiny Section 4.1 network (see tiny_network.py)."""
    problem = fl.setup(TINY_FLOOR, 0, "cpu")
    return TINY, problem, fl.find_floor(problem, TINY_FLOOR, 0)


@pytest.fixture(scope="session")
def tiny_sweep(tiny):
    """The sampled-label sweep of the tiny network, seed 0 (shared: it is the slow part)."""
    cfg, problem, floor = tiny
    return ne.sweep(problem, floor, cfg, "sampled-labels", 0)


@pytest.fixture(scope="session")
def tiny_flow(tmp_path_factory) -> sf.SeedSetup:
    """The tiny network's floor and slow-flow prediction (see slow_flow_tiny.py)."""
    return sf.prepare(tiny_config(), 0, "cpu", tmp_path_factory.mktemp("floor"))
