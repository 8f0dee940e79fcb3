"""The benchmark script runs end to end (tiny models; no timing is asserted here: speed is
measured by `make bench`, not by tests) and writes every key the book's table reads."""

import json
import sys
from pathlib import Path

import pytest
import torch

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
    # --quick runs every row, so every key of both devices' tables is written
    for key in ("grad_s", *bench_curvature.TARGETS["cpu"], *bench_curvature.TARGETS["cuda"]):
        assert key in data, key
    assert data["correctness_passed"] and data["quick"] and data["machine"]["device"] == "cpu"
    assert data["correctness"]["exact_vs_func_hessian_relerr"] < 1e-12
    assert [r["key"] for r in data["targets"]] == list(bench_curvature.TARGETS["cpu"])
    # the extrapolated chapter is the sum of its parts
    parts = ("steps", "snapshots", "losses", "floor", "projections")
    total = sum(data[f"fig2a_{p}_s"] for p in parts)
    assert abs(data["fig2a_extrapolated_s"] - total) < 1e-9 * total


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.slow
def test_bench_script_on_cuda_writes_the_cuda_table(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    import bench_curvature

    out = tmp_path / "bench-cuda.json"
    args = ["--quick", "--device", "cuda", "--repeats", "1", "--exact-repeats", "1"]
    assert bench_curvature.main([*args, "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["machine"]["device"] == "cuda" and data["machine"]["gpu"]
    assert [r["key"] for r in data["targets"]] == list(bench_curvature.TARGETS["cuda"])


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
