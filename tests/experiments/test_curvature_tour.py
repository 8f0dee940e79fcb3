"""Where the curvature page's benchmark tables come from: the last run on this machine, else
the snapshot committed with the book; for the GPU, nothing when there has been no GPU run."""

from __future__ import annotations

import json

from hessnoise.experiments import curvature_tour as tour


def test_gpu_bench_prefers_this_machines_run_and_says_when_there_is_none(tmp_path):
    assert tour.gpu_bench_results(tmp_path) is None
    assert tour.gpu_bench_source(None) == "no GPU snapshot yet"
    snapshot = {"machine": {"gpu": "NVIDIA H200", "torch": "2.11.0"}, "date": "2026-12-01",
                "targets": []}  # fmt: skip
    (tmp_path / "book" / "data").mkdir(parents=True)
    (tmp_path / "book" / "data" / "curvature-bench-cuda.json").write_text(json.dumps(snapshot))
    found = tour.gpu_bench_results(tmp_path)
    assert found[1] == "the GPU snapshot in the book"
    assert tour.gpu_bench_source(found).startswith("NVIDIA H200 (torch 2.11.0), 2026-12-01")
    (tmp_path / "_build" / "bench").mkdir(parents=True)
    (tmp_path / "_build" / "bench" / "curvature-cuda.json").write_text(json.dumps(snapshot))
    assert tour.gpu_bench_results(tmp_path)[1] == "this machine's last GPU benchmark"
