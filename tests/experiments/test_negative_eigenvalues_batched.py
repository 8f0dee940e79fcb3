"""The runs of a sweep advanced together (run_batched) against the same runs one at a time
(run_sgd): same seeds, same batches, results equal up to rounding; and a killed batched sweep
resumes run by run."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from tiny_network import TINY, TINY_FLOOR

from hessnoise import checkpoints
from hessnoise.experiments import floor as fl
from hessnoise.experiments import floor_sgd_batched
from hessnoise.experiments import negative_eigenvalues as ne

# Short windows: 200 steps at the smallest η, two snapshots per run.
SHORT = dataclasses.replace(TINY, tau_equil=2, tau_measure=3, snapshots=2, minibatch_tau=(1, 1))
# Each step of a batched run sums its zero-padded batch in another order than run_sgd does:
# about 1e-16 relative per step, a few 1e-15 after 200 steps; 1e-10 leaves room for the
# amplification by the snapshots' eigensolves and still fails on any other batch or step.
RTOL = 1e-10


def close(a: torch.Tensor, b: torch.Tensor, scale: float) -> bool:
    """Equal within RTOL relative to ``scale``, the size of what the quantity measures."""
    return bool(((a - b).abs() <= RTOL * scale).all())


def fdr_scale(run: ne.RunResult, floor: fl.Floor) -> float:
    """Both sides of the FDR are losses: the noise's (η/2)E‖g_B‖², or 1e-6 of the loss where
    there is no noise (the paper's protocol at an interpolating floor: both sides are then
    rounding, about 1e-28)."""
    return run.fdr_rhs.abs().max().item() + 1e-6 * floor.loss


def run_both(problem, floor, protocol, tmp_path):
    kw = {"tau": SHORT.minibatch_tau, "snapshots": 1} if protocol == "minibatch" else {}
    seq = ne.sweep(problem, floor, SHORT, protocol, 3, checkpoint_dir=tmp_path / "seq",
                   batched=False, **kw)  # fmt: skip
    bat = ne.sweep(problem, floor, SHORT, protocol, 3, checkpoint_dir=tmp_path / "bat",
                   batched=True, **kw)  # fmt: skip
    return seq, bat


def assert_same_runs(seq, bat, floor, tmp_path):
    for a, b in zip(seq.runs, bat.runs, strict=True):
        assert (a.eta, a.batch_size, a.steps) == (b.eta, b.batch_size, b.steps)
        # losses above the floor, on the scale of the loss itself (at an interpolating floor
        # the paper's protocol has no noise, and its excess is rounding)
        assert close(a.block_excess, b.block_excess, floor.loss)
        assert close(a.sum_neg, b.sum_neg, floor.trace) and torch.equal(a.n_neg, b.n_neg)
        assert close(a.trace, b.trace, floor.trace) and close(a.lam_min, b.lam_min, floor.trace)
        scale = fdr_scale(a, floor)
        assert close(a.fdr_lhs, b.fdr_lhs, scale) and close(a.fdr_rhs, b.fdr_rhs, scale)
        name = f"{a.protocol}_eta{a.eta:g}_S{a.batch_size}.pt"
        ta = checkpoints.load_checkpoint(tmp_path / "seq" / name)["theta"]
        tb = checkpoints.load_checkpoint(tmp_path / "bat" / name)["theta"]
        assert close(ta, tb, ta.abs().max().item())  # the final θ
        if a.protocol == "sampled-labels":
            # the floor point below θ comes from Gauss–Newton, which stops at its own
            # tolerance (floor_tol on ‖∇L‖): equal to that precision, not to rounding
            assert b.end_floor_trace == pytest.approx(a.end_floor_trace, rel=1e-8)


@pytest.mark.parametrize(
    "protocol", ["minibatch", pytest.param("sampled-labels", marks=pytest.mark.slow)]
)
def test_batched_sweep_gives_the_sequential_results(tiny, tmp_path, protocol):
    _cfg, problem, floor = tiny
    seq, bat = run_both(problem, floor, protocol, tmp_path)
    assert_same_runs(seq, bat, floor, tmp_path)
    assert len(bat.runs) == 5 and bat.eta_sweep[1] is bat.batch_sweep[1]


def test_batches_default_by_device():
    assert ne.batched_by_default("cuda") and not ne.batched_by_default("cpu")


class Killed(RuntimeError):
    pass


def kill_snapshots_at(call: int, monkeypatch) -> None:
    """Make the ``call``-th batched snapshot raise :class:`Killed` (a kill mid-sweep)."""
    calls = {"n": 0}
    real = floor_sgd_batched.snapshots  # what batched runs call at shared snapshot steps

    def dies(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            raise Killed
        return real(*args, **kwargs)

    monkeypatch.setattr(floor_sgd_batched, "snapshots", dies)


@pytest.mark.slow
def test_killed_batched_seed_resumes_to_the_same_results(tmp_path, monkeypatch):
    cfg = dataclasses.replace(SHORT, checkpoint_every=20)
    ref = ne.run_seed(cfg, 0, "cpu", tmp_path / "floor", batched=True)
    kill_snapshots_at(6, monkeypatch)
    with pytest.raises(Killed):
        ne.run_seed(cfg, 0, "cpu", tmp_path / "floor", tmp_path / "runs", batched=True)
    monkeypatch.undo()
    res = ne.run_seed(cfg, 0, "cpu", tmp_path / "floor", tmp_path / "runs", batched=True)
    runs = res.minibatch.runs + res.sampled.runs
    assert any(0 < r.resumed_from < r.steps for r in runs)
    # Stated guarantee: the records of an uninterrupted run to RTOL (a resumed run shares its
    # batch with other runs than before); on a CPU they are in fact bit for bit the same.
    for a, b in zip(ref.minibatch.runs + ref.sampled.runs, runs, strict=True):
        assert close(a.block_excess, b.block_excess, ref.floor.loss)
        assert close(a.sum_neg, b.sum_neg, ref.floor.trace)
        assert close(a.fdr_lhs, b.fdr_lhs, fdr_scale(a, ref.floor))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batched_sweep_gives_the_sequential_results(tmp_path):
    problem = fl.setup(TINY_FLOOR, 0, "cuda")
    floor = fl.find_floor(problem, TINY_FLOOR, 0)
    seq, bat = run_both(problem, floor, "sampled-labels", tmp_path)
    assert_same_runs(seq, bat, floor, tmp_path)


@pytest.mark.slow
def test_snapshots_on_a_second_thread_give_the_same_runs_and_resume(tiny, tmp_path, monkeypatch):
    # what a GPU does by default: eigensolves on a second thread while the steps go on
    _cfg, problem, floor = tiny
    cfg = dataclasses.replace(SHORT, checkpoint_every=20)

    def plans(checkpoint_dir=None):
        return [ne.plan_run(floor, cfg, "sampled-labels", eta, s, 0, checkpoint_dir=checkpoint_dir)
                for eta, s in ne.sweep_pairs(cfg)]  # fmt: skip

    ref = ne.run_batched(problem, floor, cfg, plans(), overlap=False)
    kill_snapshots_at(4, monkeypatch)
    with pytest.raises(Killed):  # raised on the second thread, reported on the first
        ne.run_batched(problem, floor, cfg, plans(tmp_path), overlap=True)
    monkeypatch.undo()
    got = ne.run_batched(problem, floor, cfg, plans(tmp_path), overlap=True)
    assert any(r.resumed_from > 0 for r in got)
    for a, b in zip(ref, got, strict=True):
        assert close(a.block_excess, b.block_excess, floor.loss)
        assert close(a.sum_neg, b.sum_neg, floor.trace) and torch.equal(a.n_neg, b.n_neg)
        assert close(a.fdr_lhs, b.fdr_lhs, fdr_scale(a, floor))
