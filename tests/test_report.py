"""A chapter's record: checks (tests and consistency checks), metrics, estimates, result
records, verdicts, checkpoint folders and provenance, written atomically."""

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from hessnoise.report import Chapter, CheckFailed, load_results, status_of, write_json_atomic
from hessnoise.stats import Estimate, Interval


def test_chapter_writes_results_schema_and_raises_on_failed_check(tmp_path):
    run = Chapter("demo", "smoke", "cpu", seed=3, results_dir=tmp_path)
    run.metric("answer", 42.0)
    run.check_below("small_error", 1e-3, 1e-2)
    with pytest.raises(CheckFailed, match="'too_big'"):
        run.check_below("too_big", 0.5, 1e-2)
    data = json.loads((tmp_path / "demo.json").read_text())
    assert set(data) >= {"chapter", "scale", "device", "checks", "metrics"}
    assert data["chapter"] == "demo" and data["scale"] == "smoke" and data["device"] == "cpu"
    assert data["metrics"] == {"answer": 42.0}
    assert [(c["name"], c["passed"]) for c in data["checks"]] == [
        ("small_error", True),
        ("too_big", False),
    ]
    assert data["checks"][0] == {
        "name": "small_error",
        "value": 1e-3,
        "target": "< 0.01",
        "passed": True,
        "kind": "test",
    }


def test_check_kinds_are_recorded_and_refused_when_unknown(tmp_path):
    run = Chapter("demo", "smoke", "cpu", results_dir=tmp_path)
    run.check_below("identity", 1e-16, 1e-10, kind="consistency")
    run.check_true("claim", True, "holds")
    with pytest.raises(ValueError, match="kind='proof'"):
        run.check_true("other", True, "holds", kind="proof")
    kinds = {c["name"]: c["kind"] for c in json.loads(run.path.read_text())["checks"]}
    assert kinds == {"identity": "consistency", "claim": "test"}
    box = run.finish()
    assert "1 of 1 tests passed; 1 of 1 consistency checks held" in box.data


def test_estimate_record_and_verdict(tmp_path):
    @dataclass
    class Result:
        slope: Interval
        rate: Estimate
        count: int
        name: str
        ok: bool
        t: torch.Tensor
        arr: np.ndarray
        nested: list

    run = Chapter("demo", "smoke", "cpu", results_dir=tmp_path)
    run.estimate("w", Interval(-24.6, -27.7, -21.8), fmt=".1f")
    run.record("fit", Result(Interval(1.0, 0.5, 1.5), Estimate(2.0, 0.1), 3, "x", True,
                             torch.tensor(4.0), np.ones(3), [1, 2]))  # fmt: skip
    run.record("", {"plain": 7})
    assert run.verdict("claim_holds", False) is False
    m = json.loads(run.path.read_text())["metrics"]
    assert (m["w"], m["w_lo"], m["w_hi"]) == (-24.6, -27.7, -21.8)
    assert (m["fit_slope"], m["fit_slope_lo"], m["fit_rate"], m["fit_rate_se"]) == (1, 0.5, 2, 0.1)
    assert (m["fit_count"], m["fit_name"], m["fit_ok"], m["fit_t"]) == (3, "x", True, 4.0)
    assert "fit_arr" not in m and "fit_nested" not in m and m["plain"] == 7
    assert m["claim_holds"] is False
    with pytest.raises(ValueError, match="Interval or an Estimate"):
        run.estimate("bad", 1.0)
    with pytest.raises(ValueError, match="dataclass instance or a mapping"):
        run.record("bad", [1, 2])


def test_checkpoint_folders_sit_beside_the_results(tmp_path):
    results = tmp_path / "_build" / "results" / "small"
    run = Chapter("negative_eigenvalues", "small", "cpu", seed=3, results_dir=results)
    base = tmp_path / "_build" / "checkpoints" / "small"
    assert run.checkpoints() == base / "negative_eigenvalues" / "seed3"
    assert run.checkpoints("floor", 5) == base / "floor" / "seed5"
    other = Chapter("x", "smoke", "cpu", results_dir=tmp_path / "elsewhere")
    assert other.checkpoints() == tmp_path / "elsewhere" / "checkpoints" / "x" / "seed0"


def test_finish_records_provenance(tmp_path):
    run = Chapter("demo", "smoke", "cpu", seed=7, results_dir=tmp_path)
    box = run.finish()
    prov = json.loads((tmp_path / "demo.json").read_text())["provenance"]
    for key in ("scale", "device", "seed", "torch", "hessnoise", "commit", "wall_time_s"):
        assert key in prov
    assert prov["seed"] == 7 and prov["wall_time_s"] >= 0
    assert "Provenance" in box.data and "git commit" in box.data


def test_chapter_validates_before_computing(tmp_path):
    with pytest.raises(ValueError, match="scale='big'"):
        Chapter("demo", "big", results_dir=tmp_path)
    with pytest.raises(ValueError, match="seed=-1"):
        Chapter("demo", "smoke", "cpu", seed=-1, results_dir=tmp_path)
    assert not list(tmp_path.iterdir())


def test_non_finite_values_become_null_and_writes_are_atomic(tmp_path):
    target = tmp_path / "x.json"
    write_json_atomic(target, {"a": 1})
    run = Chapter("nan", "smoke", "cpu", results_dir=tmp_path)
    run.metric("bad", float("nan"))
    assert json.loads((tmp_path / "nan.json").read_text())["metrics"]["bad"] is None
    with pytest.raises(ValueError):  # NaN is not JSON: refused, and the old file survives
        write_json_atomic(target, {"a": float("nan")})
    assert json.loads(target.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan.json", "x.json"]


def test_status_of_named_checks(tmp_path):
    run = Chapter("minimal_valley", "smoke", "cpu", results_dir=tmp_path)
    run.check_below("lemma1_max_deviation", 0.0, 1.0)
    results = load_results(tmp_path)
    assert status_of(results["minimal_valley"], ["lemma1_max_deviation"]) == "passed"
    assert status_of(results["minimal_valley"], ["lemma1_max_deviation", "x"]) == "incomplete"
    assert status_of(None, ["x"]) == "not run"


def test_a_name_is_glued_once_and_a_conflicting_glue_is_refused(tmp_path):
    run = Chapter("demo", "smoke", "cpu", results_dir=tmp_path)
    run.record("", {"err": 0.001})
    run.check_below("err", 0.001, 0.01)  # the same number: glued once, checked as well
    with pytest.raises(ValueError, match="glue key 'err'"):
        run.metric("err", 0.5)


def test_numpy_scalars_are_glued_as_plain_numbers(monkeypatch):
    import myst_nb

    from hessnoise import report

    seen = {}
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display: seen.update({name: value}))
    report._glue("x", np.float64(0.25))
    report._glue("n", np.int64(3))
    assert type(seen["x"]) is float and type(seen["n"]) is int
