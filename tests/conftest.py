"""Shared fixtures.  Tests run in float64 unless they test float32 on purpose."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


@pytest.fixture(scope="session")
def smoke_book(tmp_path_factory):
    """The whole book at smoke scale, HTML included: built once per session and shared by the
    book tests and the browser tests (slow: every chapter runs)."""
    from hessnoise import book

    build_dir = tmp_path_factory.mktemp("book") / "_build"
    runs = book.build("smoke", "cpu", build_dir=build_dir, log=lambda *_: None)
    return build_dir, runs
