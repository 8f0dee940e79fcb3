"""The benchmark script runs end to end (tiny models; no timing is asserted here: speed is
measured by `make bench`, not by tests) and writes every key the book's table reads."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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
