import json

import pytest

from hessnoise.claims import CLAIMS, claims_table
from hessnoise.report import Chapter, CheckFailed, load_results, status_of, write_json_atomic


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
    }


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


def test_status_and_claims_table(tmp_path):
    run = Chapter("minimal_valley", "smoke", "cpu", results_dir=tmp_path)
    run.check_below("lemma1_max_deviation", 0.0, 1.0)
    results = load_results(tmp_path)
    assert status_of(results["minimal_valley"], ["lemma1_max_deviation"]) == "passed"
    assert status_of(results["minimal_valley"], ["lemma1_max_deviation", "x"]) == "incomplete"
    assert status_of(None, ["x"]) == "not run"
    headers, rows = claims_table(tmp_path)
    assert headers[-1] == "status" and len(rows) == len(CLAIMS)
    by_ref = {r[0]: r for r in rows}
    assert by_ref["Lemma 1 (eq. 1, App. A.1)"][-1] == "incomplete"  # lemma2 not recorded
    assert by_ref["Fig. 1"][-1] == "not yet tested"
    assert by_ref["Theorem 2"][-1] == "not yet tested"
    assert by_ref["Fig. 2(a), App. A.3"][-1] == "not yet tested"


def test_every_paper_claim_is_listed():
    refs = " ".join(c.ref for c in CLAIMS)
    for needle in (
        "Lemma 1",
        "Theorem 1",
        "Eq. 11",
        "Theorem 2",
        "Corollary 2.1",
        "Fig. 1",
        "Fig. 2(a)",
        "Fig. 2(b)",
        "Fig. 2(c)",
        "Fig. 3",
        "Fig. 4",
        "A.3",
    ):
        assert needle in refs, needle


@pytest.mark.parametrize(("verdict", "status"), [(False, "not confirmed"), (True, "passed")])
def test_measured_claims_report_their_verdict(tmp_path, verdict, status):
    run = Chapter("negative_eigenvalues", "smoke", "cpu", results_dir=tmp_path)
    run.check_below("a3_collapse", 0.5, 3.0)
    run.check_true("negatives_present", True, "> 0")
    _, rows = claims_table(tmp_path)
    fig2a = next(r for r in rows if r[0] == "Fig. 2(a), App. A.3")
    assert fig2a[-1] == "incomplete"  # the verdict is not recorded yet
    run.metric("a3_proportional", verdict)
    _, rows = claims_table(tmp_path)
    assert next(r for r in rows if r[0] == "Fig. 2(a), App. A.3")[-1] == status
