"""threads(): the count inside the block, and the caller's setting restored afterwards, also
when the block raises."""

from __future__ import annotations

import multiprocessing as mp
import time

import pytest
import torch

from hessnoise import threads as th
from hessnoise.threads import cores, free_cores, threads


def test_threads_sets_and_restores():
    before = torch.get_num_threads()
    with threads("small") as n:
        assert n == 1 and torch.get_num_threads() == 1
        with threads("dense") as m:
            assert m == free_cores() and 1 <= m <= cores() and torch.get_num_threads() == m
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_threads_restores_after_an_error_and_works_as_a_decorator():
    before = torch.get_num_threads()

    @threads(1)
    def inner():
        assert torch.get_num_threads() == 1
        raise KeyError("boom")

    with pytest.raises(KeyError):
        inner()
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("bad", [0, "many", 1.5, True])
def test_bad_counts_are_refused(bad):
    with pytest.raises(ValueError, match="n="):
        with threads(bad):
            pass


def test_environment_override_replaces_every_choice(monkeypatch):
    monkeypatch.setenv("HESSNOISE_THREADS", "3")
    with threads("small") as n:
        assert n == 3 and torch.get_num_threads() == 3


def _spin(stop) -> None:
    while not stop.is_set():
        sum(range(1000))


def test_free_cores_sees_a_busy_neighbour(monkeypatch):
    monkeypatch.setattr(th, "_FREE_CACHE", {})  # measure now, not from the cache
    stop = mp.Event()
    hog = mp.Process(target=_spin, args=(stop,), daemon=True)
    hog.start()
    try:
        time.sleep(0.3)
        assert free_cores(window=0.3) <= max(1, cores() - 1)
    finally:
        stop.set()
        hog.join(5)
