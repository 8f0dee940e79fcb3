"""The chapters' core loops on a quiet machine and beside one busy process.

Small-tensor loops pay for every OpenMP thread when another process holds a core: a thread that
lost its core stalls every parallel region.  ``hessnoise.threads`` therefore runs them on one
thread, and dense linear algebra on the cores other processes leave free.  This script
measures, in one run, each toy chapter's core loop (at its small-scale sizes, shortened in
steps) and the exact spectrum of the negative-eigenvalue chapter (a 1,450² Hessian and its
eigensolve), with the package's own thread choice and, for contrast, with all cores, first on a
quiet machine and then beside a process that keeps one core busy.  It writes
``_build/bench/threads.json`` (atomically) and prints a table; the target is a slowdown of at
most 1.5× beside the busy process for the toy loops.  The exact spectra are shown for
information: dense algebra that used both cores must lose one to the busy process, so its
floor is the one-thread time.  Run with ``make bench``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from hessnoise import valley as V
from hessnoise.experiments import designing_noise as dn
from hessnoise.experiments import floor as fl
from hessnoise.experiments import minimal_valley as mv
from hessnoise.experiments import trace_decrease as td
from hessnoise.provenance import cpu_name, git_commit
from hessnoise.report import repo_root, write_json_atomic
from hessnoise.threads import _FREE_CACHE, cores

TARGET = 1.5  # largest acceptable slowdown beside one busy process


def spectra(quick: bool):
    """Exact spectra of the small-scale Section 4.1 network near its floor."""
    cfg = fl.FloorConfig.for_scale("smoke" if quick else "small")
    problem = fl.setup(cfg, 0, "cpu")
    theta = fl.find_floor(problem, cfg, 0).theta
    g = torch.Generator().manual_seed(0)
    points = [theta + 1e-3 * torch.randn(theta.numel(), dtype=theta.dtype, generator=g)
              for _ in range(3)]  # fmt: skip
    return lambda: [problem.spectrum(p) for p in points], problem.n_params


def loops(quick: bool) -> dict:
    """Each toy chapter's core loop at its small-scale sizes, shortened in steps, and three
    exact spectra of the negative-eigenvalue chapter's network: name → (loop, whether the
    slowdown target applies; the spectra are information only)."""
    mcfg = mv.MinimalValleyConfig.for_scale("small")
    tcfg = td.TraceDecreaseConfig.for_scale("small")
    dcfg = dn.DesigningNoiseConfig.for_scale("small")
    scale = 0.25 if quick else 1.0
    tcfg = dataclasses.replace(tcfg, equil_steps=int(100 * scale), measure_steps=int(200 * scale))
    # early_steps (a multiple of record_every, below steps) shortens with the run
    dcfg = dataclasses.replace(
        dcfg, steps=int(600 * scale), early_steps=dcfg.record_every * max(1, int(6 * scale))
    )
    spectrum_loop, p = spectra(quick)
    return {
        "minimal_valley: fdr (16,384 replicas)": (lambda: mv.fdr(
            V.trace_toy(), V.HessianNoise(mcfg.kappa), 0.15, mcfg.theta_hat0,
            replicas=mcfg.replicas, relax_equil=mcfg.relax_equil * scale,
            relax_measure=mcfg.relax_measure * scale, seed=0,
        ), True),
        f"trace_decrease: drift_sweep ({tcfg.replicas * len(tcfg.etas):,} replicas)": (
            lambda: td.drift_sweep(V.trace_toy(), V.HessianNoise(tcfg.kappa), tcfg.etas, tcfg),
            True),
        f"designing_noise: race ({dcfg.replicas:,} replicas)": (lambda: dn.race(dcfg, 0), True),
        f"negative_eigenvalues: 3 exact spectra (P = {p:,})": (spectrum_loop, False),
    }  # fmt: skip


def busy(stop: mp.Event) -> None:
    """Keep one core busy (a single-threaded loop of small array work) until ``stop``."""
    torch.set_num_threads(1)
    x = torch.rand(4096)
    while not stop.is_set():
        x = torch.sin(x) + 0.5


def time_it(fn, repeats: int, override: int | None) -> float:
    """Median wall time of ``fn``, with the package's own thread choices or, with
    ``override``, every choice replaced by that count (``HESSNOISE_THREADS``)."""
    _FREE_CACHE.clear()  # measure the other processes' load afresh in each phase
    if override is not None:
        os.environ["HESSNOISE_THREADS"] = str(override)
    try:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    finally:
        os.environ.pop("HESSNOISE_THREADS", None)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="shorter loops (for tests)")
    parser.add_argument("--out", default=str(repo_root() / "_build" / "bench" / "threads.json"))
    args = parser.parse_args(argv)
    rows = []
    for name, (fn, targeted) in loops(args.quick).items():
        fn()  # warm-up
        row = {"loop": name}
        for setting, n in (("package", None), ("all_cores", cores())):
            row[f"{setting}_quiet_s"] = time_it(fn, args.repeats, n)
        stop = mp.Event()
        hog = mp.Process(target=busy, args=(stop,), daemon=True)
        hog.start()
        try:
            time.sleep(0.5)
            for setting, n in (("package", None), ("all_cores", cores())):
                row[f"{setting}_busy_s"] = time_it(fn, args.repeats, n)
        finally:
            stop.set()
            hog.join(5)
        for setting in ("package", "all_cores"):
            row[f"{setting}_slowdown"] = row[f"{setting}_busy_s"] / row[f"{setting}_quiet_s"]
        row["passed"] = row["package_slowdown"] <= TARGET if targeted else None  # information
        rows.append(row)
    payload = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "commit": git_commit(repo_root()),
        "machine": {"cpu": cpu_name(), "cores": cores(), "torch": torch.__version__},
        "target_slowdown": TARGET,
        "quick": args.quick,
        "loops": rows,
    }
    write_json_atomic(Path(args.out), payload)
    print(f"{'loop':52s} {'quiet':>8s} {'busy':>8s} {'slowdown':>9s}   all cores: quiet / busy")
    for r in rows:
        print(f"{r['loop']:52s} {r['package_quiet_s']:8.2f} {r['package_busy_s']:8.2f} "
              f"{r['package_slowdown']:8.2f}×   {r['all_cores_quiet_s']:.2f} / "
              f"{r['all_cores_busy_s']:.2f} s ({r['all_cores_slowdown']:.2f}×)")  # fmt: skip
    print(json.dumps({"all_within_target": all(r["passed"] is not False for r in rows)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
