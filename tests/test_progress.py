"""Progress reports: one line per finished item on stdout (never stderr) outside Jupyter, a
tqdm notebook bar inside it, nothing when switched off."""

from __future__ import annotations

import re

import pytest

from hessnoise import progress as P


def test_lines_one_per_finished_item_with_time_on_stdout_only(capsys, monkeypatch):
    monkeypatch.setenv(P.ENV, "lines")
    seen = []
    for item in P.progress([(0.1, 5), (0.2, 10)], desc="sweep", label=lambda p: f"eta={p[0]}"):
        seen.append(item)
        # the line for an item comes after its work, not before
        assert capsys.readouterr().out.count(P.PREFIX) == len(seen) - 1
    out, err = capsys.readouterr()
    assert seen == [(0.1, 5), (0.2, 10)] and err == ""
    lines = out.splitlines()
    assert len(lines) == 1  # the second item's line was read inside the loop above
    assert re.fullmatch(
        r"\[progress\] sweep: 2/2 \(eta=0\.2\) finished in \d+\.\d s, \d+\.\d s in all", lines[0]
    )


def test_unknown_length_and_timed_block(capsys, monkeypatch):
    monkeypatch.setenv(P.ENV, "lines")
    assert list(P.progress(iter("ab"), desc="gen")) == ["a", "b"]
    with P.timed("floor: Gauss-Newton"):
        pass
    with P.ticker(5, desc="dense Hessian", lines=True) as tick:
        tick()
    with P.ticker(5, desc="quiet") as tick:
        tick()
    out, err = capsys.readouterr()
    assert err == ""
    assert [ln.split(" finished")[0] for ln in out.splitlines()] == [
        "[progress] gen: 1",
        "[progress] gen: 2",
        "[progress] floor: Gauss-Newton:",
        "[progress] dense Hessian:",
    ]


def test_off_prints_nothing_and_a_failed_block_reports_nothing(capsys, monkeypatch):
    monkeypatch.setenv(P.ENV, "off")
    assert list(P.progress(range(3), desc="x")) == [0, 1, 2]
    monkeypatch.setenv(P.ENV, "lines")
    with pytest.raises(ZeroDivisionError), P.timed("never"):
        raise ZeroDivisionError
    assert capsys.readouterr() == ("", "")


def test_outside_a_kernel_auto_means_lines_and_bad_values_are_refused(monkeypatch):
    monkeypatch.delenv(P.ENV, raising=False)
    assert P.mode() == "lines"
    monkeypatch.setenv(P.ENV, "loud")
    with pytest.raises(ValueError, match="HESSNOISE_PROGRESS='loud'"):
        P.mode()


def test_bar_mode_uses_tqdm_notebook_and_writes_no_stderr(capsys, monkeypatch):
    pytest.importorskip("ipywidgets")
    import tqdm.notebook

    made = []

    class Bar(tqdm.notebook.tqdm):  # the real bar, counted
        def __init__(self, *args, **kwargs):
            made.append(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(tqdm.notebook, "tqdm", Bar)
    monkeypatch.setenv(P.ENV, "bar")
    assert list(P.progress(range(3), desc="runs", label=str)) == [0, 1, 2]
    assert made and made[0]["total"] == 3 and made[0]["desc"] == "runs"
    assert capsys.readouterr().err == ""
