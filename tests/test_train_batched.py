"""Many SGD runs advanced together: each follows its run of ``train.sgd`` to rounding, and a
killed sweep resumes run by run from checkpoints that ``train.sgd`` reads too."""

from __future__ import annotations

import pytest
import torch
from test_train import Killed, tiny_problem
from torch import nn

from hessnoise import checkpoints, train
from hessnoise.train_batched import SGDRun, sgd_batched


def tanh_problem():
    """A small tanh network on the digits, f(θ, x), with per-sample and mean losses."""
    net, loss, x, y = tiny_problem(n=30)

    def draw_of(size: int):
        def draw(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
            idx = torch.randperm(x.shape[0], generator=gen)[:size]
            return x[idx], y[idx]

        return draw

    def mean_loss(th, xb, yb):
        return loss(net(th, xb), yb)

    def sample_loss(th, xb, yb):
        return nn.functional.cross_entropy(net(th, xb), yb, label_smoothing=0.1, reduction="none")

    return net, draw_of, mean_loss, sample_loss


def batched_runs(net, draw_of, tmp_path=None):
    """Five runs that differ in step size, batch size, length, seed and period."""
    theta0 = net.theta0()
    specs = [(0.1, 5, 40, 1, 3), (0.05, 12, 25, 2, 5), (0.2, 30, 60, 3, 4), (0.1, 5, 1, 4, 1),
             (0.3, 8, 33, 5, 11)]  # fmt: skip
    return [
        SGDRun(theta0 + 0.01 * k, draw_of(s), lr, steps, seed, every,
                     None if tmp_path is None else tmp_path / f"run{k}.pt", f"fp{k}")
        for k, (lr, s, steps, seed, every) in enumerate(specs)
    ]  # fmt: skip


def norm_record(ids, steps, thetas):
    return [{"norm": t.norm().item(), "first": t[0].item()} for t in thetas]


@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_sgd_batched_follows_each_run_of_sgd(momentum):
    net, draw_of, mean_loss, sample_loss = tanh_problem()
    runs = batched_runs(net, draw_of)
    got = sgd_batched(sample_loss, runs, momentum=momentum, callback=norm_record)
    for run, res in zip(runs, got, strict=True):
        ref = train.sgd(
            mean_loss, run.theta0, run.draw, lr=run.lr, steps=run.steps, seed=run.seed,
            momentum=momentum, every=run.every,
            callback=lambda step, th: norm_record([0], [step], th[None])[0],
        )  # fmt: skip
        # the same batches; sums over zero-padded batches add in another order: rounding only
        assert (res.theta - ref.theta).abs().max() < 1e-13
        assert [r["step"] for r in res.records] == [r["step"] for r in ref.records]
        for a, b in zip(res.records, ref.records, strict=True):
            assert a["norm"] == pytest.approx(b["norm"], rel=1e-13, abs=0)
        assert res.steps == run.steps and res.resumed_from == 0


def test_sgd_batched_resumes_run_by_run_and_shares_sgds_checkpoints(tmp_path):
    net, draw_of, mean_loss, sample_loss = tanh_problem()
    ref = sgd_batched(sample_loss, batched_runs(net, draw_of), callback=norm_record)
    runs = batched_runs(net, draw_of, tmp_path)

    def dies(ids, steps, thetas):
        if 52 in steps:  # run 2 at step 52; runs 0, 1, 3 and 4 have finished by then
            raise Killed
        return norm_record(ids, steps, thetas)

    with pytest.raises(Killed):
        sgd_batched(sample_loss, runs, callback=dies, checkpoint_every=20)
    assert checkpoints.load_checkpoint(tmp_path / "run2.pt")["step"] == 40
    assert checkpoints.load_checkpoint(tmp_path / "run0.pt")["step"] == 40  # finished
    res = sgd_batched(sample_loss, runs, callback=norm_record, checkpoint_every=20)
    assert [r.resumed_from for r in res] == [40, 25, 40, 1, 33]
    # Stated guarantee: a resumed run gives the uninterrupted run's records to rounding (the
    # other runs in its batch change, and with them the order of some sums); on this CPU
    # the results are in fact bit for bit the same.
    for a, b in zip(res, ref, strict=True):
        assert (a.theta - b.theta).abs().max() < 1e-13
        assert [r["step"] for r in a.records] == [r["step"] for r in b.records]
        for ra, rb in zip(a.records, b.records, strict=True):
            assert ra["norm"] == pytest.approx(rb["norm"], rel=1e-13, abs=0)
    # the checkpoints are sgd's: sgd reads a finished one back without stepping
    run = runs[2]
    again = train.sgd(mean_loss, run.theta0, run.draw, lr=run.lr, steps=run.steps,
                      seed=run.seed, every=run.every, checkpoint=run.checkpoint,
                      fingerprint=run.fingerprint)  # fmt: skip
    assert again.resumed_from == run.steps and torch.equal(again.theta, res[2].theta)


def test_sgd_batched_refuses_bad_runs():
    net, draw_of, _, sample_loss = tanh_problem()
    theta0 = net.theta0()
    with pytest.raises(ValueError, match="runs is empty"):
        sgd_batched(sample_loss, [])
    with pytest.raises(ValueError, match=r"runs\[1\].lr=0.0"):
        sgd_batched(sample_loss, [SGDRun(theta0, draw_of(3), 0.1, 2, 0),
                                  SGDRun(theta0, draw_of(3), 0.0, 2, 0)])  # fmt: skip
    short = SGDRun(theta0[:3], draw_of(3), 0.1, 2, 0)
    with pytest.raises(ValueError, match=r"runs\[1\].theta0 has shape \(3,\)"):
        sgd_batched(sample_loss, [SGDRun(theta0, draw_of(3), 0.1, 2, 0), short])

    def other(gen):
        x, y = draw_of(3)(gen)
        return x[:, :5], y

    with pytest.raises(ValueError, match=r"runs\[1\].draw returns tensors"):
        sgd_batched(sample_loss, [SGDRun(theta0, draw_of(3), 0.1, 2, 0),
                                  SGDRun(theta0, other, 0.1, 2, 0)])  # fmt: skip
