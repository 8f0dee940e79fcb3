"""A network small enough for the slow-flow tests: 10 digits at 4×4, 12 hidden units
(P = 334 parameters, N(K − 1) = 90 constraints), and a slow-flow configuration for it."""

from __future__ import annotations

import dataclasses

from hessnoise.experiments import floor as fl
from hessnoise.experiments import slow_flow as sf

TINY_FLOOR = fl.FloorConfig(dataset="digits", n=10, size=4, hidden=12)


def tiny_config(**change) -> sf.SlowFlowConfig:
    base = sf.SlowFlowConfig(
        floor=TINY_FLOOR, etas=(0.025, 0.05, 0.1), batch_sizes=(2, 4, 8), eta0=0.05,
        batch_size0=4, tau_window=2.0, points=1, replicas=2, seeds=1, flow_time=5.0,
        reference_flow_time=50.0, series_taus=(0.5, 2.0), series_replicas=2,
    )  # fmt: skip
    return dataclasses.replace(base, **change)
