"""The benchmark script runs end to end (tiny models; no timing is asserted here: speed is
measured by `make bench`, not by tests) and writes every key the book's table reads."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_script_writes_all_keys(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    import bench_curvature

    out = tmp_path / "bench.json"
    assert (
        bench_curvature.main(
            ["--quick", "--repeats", "1", "--exact-repeats", "1", "--out", str(out)]
        )
        == 0
    )
    data = json.loads(out.read_text())
    for key in ("grad_s", *bench_curvature.TARGETS):
        assert key in data, key
    assert data["correctness_passed"] and data["quick"]
    assert data["correctness"]["exact_vs_func_hessian_relerr"] < 1e-12
    assert [r["key"] for r in data["targets"]] == list(bench_curvature.TARGETS)


@pytest.mark.slow
def test_thread_bench_writes_every_loop(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    import bench_threads

    out = tmp_path / "threads.json"
    assert bench_threads.main(["--quick", "--repeats", "1", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert len(data["loops"]) == 4 and data["target_slowdown"] == bench_threads.TARGET
    for row in data["loops"]:
        for key in ("package_quiet_s", "package_busy_s", "all_cores_quiet_s", "all_cores_busy_s"):
            assert row[key] > 0, key
