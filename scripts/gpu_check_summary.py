"""Summarize a run of scripts/gpu-check.sh: OUTDIR/summary.md from what the stages wrote.

usage: python scripts/gpu_check_summary.py OUTDIR STAGES_TSV SCALE DEVICE SECONDS

Reads STAGES_TSV (stage, status, seconds per line), the chapters' results files and the
benchmark's JSON, and writes one page: each stage's outcome and time, each chapter's wall time,
dataset, checks and verdicts, and the benchmark's targets.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

CHAPTERS = ("negative_eigenvalues", "curved_floor")
# What a reader of the Fig. 2(a) chapter wants first; shown when the chapter recorded them.
KEY_METRICS = ("dataset", "dataset_stands_in", "n_params", "floor_iterations", "fit_slope",
               "fit_exponent", "a3_proportional", "fdr_stationary", "interpolates")  # fmt: skip


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def summary(out: Path, table: Path, scale: str, device: str, seconds: float) -> str:
    lines = [f"# GPU check: {scale} scale on {device}, {seconds:.0f} s in all", ""]
    lines += ["| stage | outcome | seconds |", "|---|---|---|"]
    for row in table.read_text().splitlines():
        stage, status, secs = row.split("\t")
        lines.append(f"| {stage} | {status} | {secs} |")
    for name in CHAPTERS:
        res = _load(out / f"{name}.json")
        if res is None:
            continue
        prov, metrics = res.get("provenance", {}), res.get("metrics", {})
        failed = [c["name"] for c in res.get("checks", []) if not c["passed"]]
        lines += ["", f"## {name}", ""]
        lines.append(f"- wall time inside the notebook: {prov.get('wall_time_s', 'unfinished')} s")
        lines.append(f"- device: {prov.get('device_name', res.get('device'))}")
        lines.append(f"- checks: {len(res.get('checks', []))}, failed: {failed or 'none'}")
        for key in KEY_METRICS:
            if key in metrics:
                lines.append(f"- {key}: {metrics[key]}")
    bench = _load(out / f"curvature-{device}.json")
    if bench is not None:
        lines += ["", f"## benchmark ({bench['machine'].get('gpu', device)})", ""]
        lines += ["| ratio | measured | target | met |", "|---|---|---|---|"]
        for r in bench["targets"]:
            value = "n/a" if r["value"] is None else f"{r['value']:.3g}"
            lines.append(f"| {r['key']} | {value} | {r['target']} | {r['passed']} |")
        lines.append(f"\ncorrectness passed: {bench['correctness_passed']}")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[0])
    text = summary(out, Path(argv[1]), argv[2], argv[3], float(argv[4]))
    (out / "summary.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
