"""Benchmark hessnoise's curvature engine against PyHessian and curvlinops, side by side.

Run with ``make bench`` (which installs the optional comparison libraries into .venv; this
script installs nothing).  Everything is measured in one run, with the same model, data and
thread count, after a correctness check against a reference.  Writes
``_build/bench/curvature.json`` (atomically) and prints a table.

Rows:

* HVPs: a tanh MLP 784-32-32-10 (26,506 parameters) on 2,048 Fashion-MNIST images (uniform
  noise if the data is missing) in 8 ready batches of 256, float32.  ``grad_s`` is one full-dataset
  gradient through hessnoise's data path (the faster of it and a plain per-batch
  ``.backward()`` loop, both reported).
* Exact spectrum: the paper's 196-30-10 MLP (6,220 parameters) on 500 images, float64.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from hessnoise import data, models
from hessnoise.curvature import HessianOperator, gradient, hessian_matrix, spectrum
from hessnoise.provenance import cpu_name, git_commit
from hessnoise.report import repo_root, write_json_atomic

TARGETS = {
    "hvp_single_over_grad": ("<=", 2.5),
    "hvp_sequential_over_grad": ("<=", 1.5),
    "hvp_batched_per_probe_over_grad": ("<=", 1.2),
    "pyhessian_single_over_ours": (">=", 1.7),
    "curvlinops_batched_over_ours": (">=", 1.0),
    "exact_hessian_naive_over_ours": (">=", 3.0),
    "exact_total_over_eigensolve": ("<=", 1.5),
}


def timed(fn, repeats: int) -> float:
    """Median wall time of ``repeats`` calls after one warm-up call (wall time includes
    everything the call does: building operators, iterating the DataLoader)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def images(n: int, size: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, str]:
    try:
        x, y = data.load("fashion-mnist", n, size=size, seed=0, dtype=dtype)
        return x, y, "Fashion-MNIST"
    except data.DataMissing:
        gen = torch.Generator().manual_seed(0)
        x = torch.rand(n, size * size, generator=gen).to(dtype)
        return x, torch.randint(0, 10, (n,), generator=gen), "uniform noise (Fashion-MNIST missing)"


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


def hvp_rows(repeats: int, quick: bool = False) -> dict:
    n, side, hidden = (256, 7, 8) if quick else (2048, 28, 32)
    x, y, source = images(n, side, torch.float32)
    net = models.mlp(
        side * side, [hidden, hidden], 10, activation="tanh", seed=0, dtype=torch.float32
    )
    loss = nn.CrossEntropyLoss()
    # A list of ready batches rather than a DataLoader over a TensorDataset: the latter's
    # per-sample indexing would dominate every timing and flatter every ratio.
    loader = list(zip(x.split(256), y.split(256), strict=True))
    n_params = models.n_params(net)
    gen = torch.Generator().manual_seed(1)
    v = torch.randn(n_params, generator=gen)
    probes = torch.randn(16, n_params, generator=gen)

    # Correctness first: float32 products against a float64 reference on the same data.
    ref = HessianOperator(net, loss, loader, dtype=torch.float64, mode="rev-rev")
    ref_v, ref_probes = ref(v.double()), ref(probes.double())
    ours = HessianOperator(net, loss, loader)
    checks = {
        "ours_single_relerr": rel(ours(v), ref_v),
        "ours_batched_relerr": rel(ours(probes), ref_probes),
    }

    def grad_loop() -> None:
        net.zero_grad()
        for xb, yb in loader:
            (loss(net(xb), yb) * len(yb) / len(x)).backward()

    t_grad_ours = timed(lambda: gradient(net, loss, loader), repeats)
    t_grad_loop = timed(grad_loop, repeats)
    grad_s = min(t_grad_ours, t_grad_loop)

    t_single = timed(lambda: HessianOperator(net, loss, loader, reuse_graph=False)(v), repeats)

    def sequence() -> None:  # 20 products, each on the last result, as Lanczos makes them
        op = HessianOperator(net, loss, loader, reuse_graph=True)
        w = v
        for _ in range(20):
            w = op(w / w.norm())

    t_seq = timed(sequence, max(1, repeats // 2)) / 20
    batched_op = HessianOperator(net, loss, loader)
    t_batched = timed(lambda: batched_op(probes), repeats)

    out = {
        "hvp_model": f"tanh MLP {side * side}-{hidden}-{hidden}-10, {n_params} parameters, float32",
        "hvp_data": f"{len(x)} samples of {source}, a list of 8 batches of 256",
        "grad_s": grad_s,
        "grad_hessnoise_s": t_grad_ours,
        "grad_loop_s": t_grad_loop,
        "hvp_single_s": t_single,
        "hvp_sequential_s": t_seq,
        "hvp_batched16_s": t_batched,
        "hvp_single_over_grad": t_single / grad_s,
        "hvp_sequential_over_grad": t_seq / grad_s,
        "hvp_batched_per_probe_over_grad": t_batched / 16 / grad_s,
        "checks": checks,
    }

    try:
        from pyhessian import hessian as PyHessian
    except ImportError:
        out["pyhessian_single_over_ours"] = None
        out["pyhessian_note"] = "PyHessian not installed: pip install -r requirements-bench.txt"
    else:
        ph = PyHessian(net, loss, dataloader=loader, cuda=False)
        v_list = [
            c.reshape(p.shape)
            for c, p in zip(
                v.split([p.numel() for p in net.parameters()]), net.parameters(), strict=True
            )
        ]
        _, ph_hv = ph.dataloader_hv_product(v_list)
        checks["pyhessian_relerr"] = rel(torch.cat([t.reshape(-1) for t in ph_hv]), ref_v)
        t_ph = timed(lambda: ph.dataloader_hv_product(v_list), max(1, repeats // 2))
        net.zero_grad(set_to_none=True)  # PyHessian leaves graphs on .grad
        out["pyhessian_single_s"] = t_ph
        out["pyhessian_single_over_ours"] = t_ph / t_seq

    try:
        from curvlinops import HessianLinearOperator
    except ImportError:
        out["curvlinops_batched_over_ours"] = None
        out["curvlinops_note"] = "curvlinops not installed: pip install -r requirements-bench.txt"
    else:
        cl = HessianLinearOperator(
            net, loss, list(net.parameters()), loader, check_deterministic=False
        )
        checks["curvlinops_relerr"] = rel((cl @ probes.T).T, ref_probes)
        t_cl = timed(lambda: cl @ probes.T, repeats)
        out["curvlinops_batched16_s"] = t_cl
        out["curvlinops_batched_over_ours"] = t_cl / t_batched
    return out


def exact_rows(repeats: int, quick: bool = False) -> dict:
    from torch.func import functional_call
    from torch.func import hessian as func_hessian

    n, side, hidden = (50, 4, 6) if quick else (500, 14, 30)
    x, y, source = images(n, side, torch.float64)
    net = models.mlp(side * side, [hidden], 10, activation="tanh", seed=0)
    loss = nn.CrossEntropyLoss(label_smoothing=0.1)
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for p in net.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in net.parameters()])

    def naive() -> torch.Tensor:
        def f(theta: torch.Tensor) -> torch.Tensor:
            params = dict(
                zip(
                    names,
                    [
                        c.view(s)
                        for c, s in zip(
                            theta.split([s.numel() for s in shapes]), shapes, strict=True
                        )
                    ],
                    strict=True,
                )
            )
            return loss(functional_call(net, params, (x,)), y)

        return func_hessian(f)(flat)

    def ours() -> torch.Tensor:
        return hessian_matrix(HessianOperator(net, loss, (x, y)))

    h_ours, h_naive = ours(), naive()  # also the warm-up calls
    checks = {"exact_vs_func_hessian_relerr": rel(h_ours, h_naive)}
    del h_naive
    timings: dict[str, list[float]] = {"naive": [], "ours": [], "eig": [], "total": []}
    for _ in range(repeats):  # interleaved, so that a noisy moment hits every method alike
        timings["naive"].append(_once(naive))
        timings["ours"].append(_once(ours))
        timings["eig"].append(_once(lambda: torch.linalg.eigvalsh(h_ours)))
        timings["total"].append(_once(lambda: spectrum(ours())))
    t_naive, t_ours, t_eig, t_total = (
        statistics.median(timings[k]) for k in ("naive", "ours", "eig", "total")
    )
    return {
        "exact_model": f"tanh MLP {side * side}-{hidden}-10, {flat.numel()} parameters, float64",
        "exact_data": f"{n} samples of {source} at {side}x{side}",
        "exact_hessian_naive_s": t_naive,
        "exact_hessian_ours_s": t_ours,
        "exact_eigensolve_s": t_eig,
        "exact_total_s": t_total,
        "exact_hessian_naive_over_ours": t_naive / t_ours,
        "exact_total_over_eigensolve": t_total / t_eig,
        "checks": checks,
    }


def _once(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed repetitions of HVP rows")
    parser.add_argument("--exact-repeats", type=int, default=3)
    parser.add_argument("--out", default=str(repo_root() / "_build" / "bench" / "curvature.json"))
    parser.add_argument(
        "--quick", action="store_true", help="tiny models: checks the script, times nothing useful"
    )
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    started = time.time()
    hvp = hvp_rows(args.repeats, args.quick)
    exact = exact_rows(args.exact_repeats, args.quick)
    checks = {**hvp.pop("checks"), **exact.pop("checks")}
    result = {**hvp, **exact}
    tolerances = {"exact_vs_func_hessian_relerr": 1e-12}
    failed_checks = [k for k, val in checks.items() if val > tolerances.get(k, 1e-4)]
    rows = []
    for key, (op, target) in TARGETS.items():
        val = result.get(key)
        ok = None if val is None else (val <= target if op == "<=" else val >= target)
        rows.append({"key": key, "value": val, "target": f"{op} {target}", "passed": ok})
    payload = {
        **result,
        "targets": rows,
        "correctness": checks,
        "correctness_passed": not failed_checks,
        "machine": {
            "cpu": cpu_name(),
            "threads": threads,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "commit": git_commit(repo_root()),
        "quick": args.quick,
        "date": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "wall_s": time.time() - started,
    }
    write_json_atomic(Path(args.out), payload)
    print(f"correctness (relative errors): {json.dumps(checks)}")
    print(f"{'key':<36}{'value':>10}  {'target':>8}  passed")
    for r in rows:
        val = "n/a" if r["value"] is None else f"{r['value']:.3f}"
        print(f"{r['key']:<36}{val:>10}  {r['target']:>8}  {r['passed']}")
    print(f"grad_s = {result['grad_s'] * 1e3:.2f} ms ({threads} threads); wrote {args.out}")
    if failed_checks:
        print(f"correctness check failed: {failed_checks}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
