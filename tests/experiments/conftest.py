"""The tiny network's floor and slow-flow prediction, shared by the slow-flow tests."""

from __future__ import annotations

import pytest
from slow_flow_tiny import tiny_config

from hessnoise.experiments import slow_flow as sf


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> sf.SeedSetup:
    return sf.prepare(tiny_config(), 0, "cpu", tmp_path_factory.mktemp("floor"))
