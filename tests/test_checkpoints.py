"""Atomic checkpoints and fingerprints."""

from __future__ import annotations

import dataclasses

import torch

from hessnoise import checkpoints


def test_round_trip_and_missing_is_none(tmp_path):
    assert checkpoints.load_checkpoint(tmp_path / "none.pt") is None
    assert checkpoints.load_checkpoint(None) is None
    state = {"theta": torch.arange(3.0), "records": [{"a": 1.0, "b": [1, 2]}], "step": 4}
    checkpoints.save_checkpoint(tmp_path / "sub" / "c.pt", state)
    back = checkpoints.load_checkpoint(tmp_path / "sub" / "c.pt")
    assert torch.equal(back["theta"], state["theta"]) and back["records"] == state["records"]
    assert not list((tmp_path / "sub").glob(".c.pt.*"))  # no temporary file left behind


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "c.pt"
    checkpoints.save_checkpoint(path, {"step": 1})

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot save")

    try:
        checkpoints.save_checkpoint(path, {"step": 2, "bad": Unpicklable()})
    except RuntimeError:
        pass
    assert checkpoints.load_checkpoint(path) == {"step": 1}
    assert list(tmp_path.iterdir()) == [path]


def test_load_matching_needs_the_same_fingerprint(tmp_path):
    path = tmp_path / "c.pt"
    key = checkpoints.fingerprint("cfg", 1, (2.0, 3))
    checkpoints.save_checkpoint(path, {"fingerprint": key, "x": 1})
    assert checkpoints.load_matching(path, key)["x"] == 1
    assert checkpoints.load_matching(path, checkpoints.fingerprint("cfg", 2, (2.0, 3))) is None


def test_fingerprints_see_every_field_and_every_bit():
    @dataclasses.dataclass
    class Cfg:
        a: float
        b: tuple

    one = checkpoints.fingerprint(dataclasses.asdict(Cfg(0.1, (1, 2))))
    assert one == checkpoints.fingerprint(dataclasses.asdict(Cfg(0.1, (1, 2))))
    assert one != checkpoints.fingerprint(dataclasses.asdict(Cfg(0.1, (1, 3))))
    t = torch.tensor([1.0, 2.0], dtype=torch.float64)
    u = t.clone()
    u[1] = torch.nextafter(u[1], torch.tensor(3.0, dtype=torch.float64))
    assert checkpoints.tensor_hash(t) == checkpoints.tensor_hash(t.clone())
    assert checkpoints.tensor_hash(t) != checkpoints.tensor_hash(u)
