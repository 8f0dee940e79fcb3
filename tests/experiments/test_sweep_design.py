"""The sweep design shared by the Fig. 2(a) chapters, against hand-written lists."""

from __future__ import annotations

from dataclasses import dataclass

from hessnoise.experiments import sweep_design


@dataclass
class Design:
    etas: tuple[float, ...] = (0.1, 0.01, 0.05)
    batch_sizes: tuple[int, ...] = (20, 5, 10)
    eta0: float = 0.05
    batch_size0: int = 10


def test_pairs_run_the_centre_once_in_sorted_order():
    assert sweep_design.pairs(Design()) == [
        (0.01, 10), (0.05, 10), (0.1, 10), (0.05, 5), (0.05, 20),
    ]  # fmt: skip


def test_split_shares_the_centre_and_distinct_lists_it_once():
    done = {p: object() for p in sweep_design.pairs(Design())}
    eta_sweep, batch_sweep = sweep_design.split(Design(), done)
    assert eta_sweep == [done[0.01, 10], done[0.05, 10], done[0.1, 10]]
    assert batch_sweep == [done[0.05, 5], done[0.05, 10], done[0.05, 20]]
    runs = sweep_design.distinct(eta_sweep, batch_sweep)
    assert runs == [done[0.01, 10], done[0.05, 10], done[0.1, 10], done[0.05, 5], done[0.05, 20]]
