"""Benchmark hessnoise's curvature engine against PyHessian and curvlinops, side by side.

Run with ``make bench`` (CPU) or ``make bench DEVICE=cuda`` (which install the optional
comparison libraries into .venv; this script installs nothing).  Everything is measured in one
run, with the same model, data and thread count, after a correctness check against a float64
reference; on CUDA every timing is synchronized and TF32 is off.  Writes
``_build/bench/curvature.json`` (``curvature-cuda.json`` on CUDA) atomically and prints a table.

Rows:

* HVPs: a tanh MLP 784-32-32-10 (26,506 parameters) on 2,048 Fashion-MNIST images (uniform
  noise if the data is missing) in 8 ready batches of 256, float32.  ``grad_s`` is one
  full-dataset gradient through hessnoise's data path (the faster of it and a plain per-batch
  ``.backward()`` loop, both reported).
* ResNet-18 (torchvision, 11.2M parameters, eval mode) on 512 random CIFAR-shaped images in 4
  batches of 128, float32 (CUDA, or ``--rows``): products in a sequence against PyHessian,
  batched against curvlinops.
* Exact spectrum: the paper's 196-30-10 MLP (6,220 parameters) on 500 images, float64: the
  dense Hessian against ``torch.func.hessian``, and the eigensolve.
* Fig. 2(a) at paper scale (CUDA, or ``--rows``): one SGD step, the 22 runs of both sweeps
  advanced together, one exact snapshot, and the whole chapter extrapolated from them.
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
from hessnoise.scales import resolve_device

CPU = torch.device("cpu")

TARGETS = {
    "cpu": {
        "hvp_single_over_grad": ("<=", 2.5),
        "hvp_sequential_over_grad": ("<=", 1.5),
        "hvp_batched_per_probe_over_grad": ("<=", 1.2),
        "pyhessian_single_over_ours": (">=", 1.7),
        "curvlinops_batched_over_ours": (">=", 1.0),
        "exact_hessian_naive_over_ours": (">=", 3.0),
        "exact_total_over_eigensolve": ("<=", 1.5),
    },
    # issue 14: what one H100/H200 must reach
    "cuda": {
        "hvp_sequential_over_grad": ("<=", 1.5),
        "pyhessian_single_over_ours": (">=", 5.0),
        "curvlinops_batched_over_ours": (">=", 3.0),
        "resnet_pyhessian_single_over_ours": (">=", 3.0),
        "resnet_curvlinops_batched_over_ours": (">=", 2.0),
        "exact_hessian_naive_over_ours": (">=", 1.0),
        "exact_total_over_eigensolve": ("<=", 1.5),
        "fig2a_extrapolated_s": ("<=", 360.0),
    },
}
ROWS = ("hvp", "resnet", "exact", "fig2a")
# float32 products against float64 references: relative max errors allowed.  ResNet-18's
# float32 products agree with float64 to about 2e-3 (the same for every library).
TOLERANCES = {"exact_vs_func_hessian_relerr": 1e-12, "resnet": 1e-2}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, repeats: int, device: torch.device = CPU) -> float:
    """Median wall time of ``repeats`` calls after one warm-up call (wall time includes
    everything the call does: building operators, iterating the DataLoader; on CUDA, until
    the device has finished)."""
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
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


def others(
    net: nn.Module, loss: nn.Module, loader: list, v: torch.Tensor, probes: torch.Tensor,
    ref_v: torch.Tensor, ref_probes: torch.Tensor, t_seq: float, t_batched: float,
    repeats: int, device: torch.device, prefix: str = "",
) -> tuple[dict, dict]:  # fmt: skip
    """PyHessian's single product against ours in a sequence, and curvlinops' batched products
    against ours, each after a check against the float64 reference: (rows, checks)."""
    out: dict = {}
    checks: dict = {}
    try:
        from pyhessian import hessian as PyHessian
    except ImportError:
        out[f"{prefix}pyhessian_single_over_ours"] = None
        out[f"{prefix}pyhessian_note"] = (
            "PyHessian not installed: pip install -r requirements-bench.txt"
        )
    else:
        ph = PyHessian(net, loss, dataloader=loader, cuda=device.type == "cuda")
        v_list = [
            c.reshape(p.shape)
            for c, p in zip(
                v.split([p.numel() for p in net.parameters()]), net.parameters(), strict=True
            )
        ]
        _, ph_hv = ph.dataloader_hv_product(v_list)
        checks[f"{prefix}pyhessian_relerr"] = rel(torch.cat([t.reshape(-1) for t in ph_hv]), ref_v)
        t_ph = timed(lambda: ph.dataloader_hv_product(v_list), max(1, repeats // 2), device)
        net.zero_grad(set_to_none=True)  # PyHessian leaves graphs on .grad
        out[f"{prefix}pyhessian_single_s"] = t_ph
        out[f"{prefix}pyhessian_single_over_ours"] = t_ph / t_seq

    try:
        from curvlinops import HessianLinearOperator
    except ImportError:
        out[f"{prefix}curvlinops_batched_over_ours"] = None
        out[f"{prefix}curvlinops_note"] = (
            "curvlinops not installed: pip install -r requirements-bench.txt"
        )
    else:
        cl = HessianLinearOperator(
            net, loss, list(net.parameters()), loader, check_deterministic=False
        )
        checks[f"{prefix}curvlinops_relerr"] = rel((cl @ probes.T).T, ref_probes)
        t_cl = timed(lambda: cl @ probes.T, repeats, device)
        out[f"{prefix}curvlinops_batched{len(probes)}_s"] = t_cl
        out[f"{prefix}curvlinops_batched_over_ours"] = t_cl / t_batched
    return out, checks


def sequence_of(op_factory, v: torch.Tensor, length: int):
    """``length`` products, each on the last result, as Lanczos makes them."""

    def run() -> None:
        op = op_factory()
        w = v
        for _ in range(length):
            w = op(w / w.norm())

    return run


def hvp_rows(repeats: int, quick: bool = False, device: torch.device = CPU) -> dict:
    n, side, hidden = (256, 7, 8) if quick else (2048, 28, 32)
    x, y, source = images(n, side, torch.float32)
    x, y = x.to(device), y.to(device)
    net = models.mlp(
        side * side, [hidden, hidden], 10, activation="tanh", seed=0, dtype=torch.float32,
        device=device,
    )  # fmt: skip
    loss = nn.CrossEntropyLoss()
    # A list of ready batches rather than a DataLoader over a TensorDataset: the latter's
    # per-sample indexing would dominate every timing and flatter every ratio.
    loader = list(zip(x.split(256), y.split(256), strict=True))
    n_params = models.n_params(net)
    gen = torch.Generator().manual_seed(1)
    v = torch.randn(n_params, generator=gen).to(device)
    probes = torch.randn(16, n_params, generator=gen).to(device)

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

    t_grad_ours = timed(lambda: gradient(net, loss, loader), repeats, device)
    t_grad_loop = timed(grad_loop, repeats, device)
    grad_s = min(t_grad_ours, t_grad_loop)

    t_single = timed(
        lambda: HessianOperator(net, loss, loader, reuse_graph=False)(v), repeats, device
    )
    seq = sequence_of(lambda: HessianOperator(net, loss, loader, reuse_graph=True), v, 20)
    t_seq = timed(seq, max(1, repeats // 2), device) / 20
    batched_op = HessianOperator(net, loss, loader)
    t_batched = timed(lambda: batched_op(probes), repeats, device)

    out = {
        "hvp_model": f"tanh MLP {side * side}-{hidden}-{hidden}-10, {n_params} parameters, float32",
        "hvp_data": f"{len(x)} samples of {source}, a list of {len(loader)} batches of 256",
        "grad_s": grad_s,
        "grad_hessnoise_s": t_grad_ours,
        "grad_loop_s": t_grad_loop,
        "hvp_single_s": t_single,
        "hvp_sequential_s": t_seq,
        "hvp_batched16_s": t_batched,
        "hvp_single_over_grad": t_single / grad_s,
        "hvp_sequential_over_grad": t_seq / grad_s,
        "hvp_batched_per_probe_over_grad": t_batched / 16 / grad_s,
    }
    rows, more = others(net, loss, loader, v, probes, ref_v, ref_probes, t_seq, t_batched,
                        repeats, device)  # fmt: skip
    return {**out, **rows, "checks": {**checks, **more}}


def resnet_rows(repeats: int, quick: bool = False, device: torch.device = CPU) -> dict:
    """ResNet-18 from torchvision, eval mode, on random CIFAR-shaped data, float32."""
    import torchvision

    n, side, batch, k, length = (2, 8, 1, 2, 2) if quick else (512, 32, 128, 16, 20)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, side, side, generator=gen).to(device)
    y = torch.randint(0, 10, (n,), generator=gen).to(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = torchvision.models.resnet18(num_classes=10).to(device).eval()
    loss = nn.CrossEntropyLoss()
    loader = list(zip(x.split(batch), y.split(batch), strict=True))
    n_params = models.n_params(net)
    v = torch.randn(n_params, generator=gen).to(device)
    probes = torch.randn(k, n_params, generator=gen).to(device)

    ref = HessianOperator(net, loss, loader, dtype=torch.float64, mode="rev-rev",
                          reuse_graph=False)  # fmt: skip
    # one probe at a time: the reference shares no batching with what it checks
    ref_v = ref(v.double())
    ref_probes = torch.stack([ref(p) for p in probes.double()])
    del ref
    ours = HessianOperator(net, loss, loader)
    checks = {
        "resnet_ours_single_relerr": rel(ours(v), ref_v),
        "resnet_ours_batched_relerr": rel(ours(probes), ref_probes),
    }
    seq = sequence_of(lambda: HessianOperator(net, loss, loader, reuse_graph=True), v, length)
    t_seq = timed(seq, max(1, repeats // 2), device) / length
    t_batched = timed(lambda: ours(probes), max(1, repeats // 2), device)
    out = {
        "resnet_model": f"torchvision ResNet-18 (eval mode), {n_params} parameters, float32",
        "resnet_data": f"{n} random images 3x{side}x{side}, {n // batch} batches of {batch}",
        "resnet_hvp_sequential_s": t_seq,
        f"resnet_hvp_batched{k}_s": t_batched,
    }
    rows, more = others(net, loss, loader, v, probes, ref_v, ref_probes, t_seq, t_batched,
                        max(1, repeats // 2), device, prefix="resnet_")  # fmt: skip
    return {**out, **rows, "checks": {**checks, **more}}


def exact_rows(repeats: int, quick: bool = False, device: torch.device = CPU) -> dict:
    from torch.func import functional_call
    from torch.func import hessian as func_hessian

    n, side, hidden = (50, 4, 6) if quick else (500, 14, 30)
    x, y, source = images(n, side, torch.float64)
    x, y = x.to(device), y.to(device)
    net = models.mlp(side * side, [hidden], 10, activation="tanh", seed=0, device=device)
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
    torch.linalg.eigvalsh(h_ours)  # warm-up: the first call loads the solver
    timings: dict[str, list[float]] = {"naive": [], "ours": [], "eig": [], "total": []}
    for _ in range(repeats):  # interleaved, so that a noisy moment hits every method alike
        timings["naive"].append(_once(naive, device))
        timings["ours"].append(_once(ours, device))
        timings["eig"].append(_once(lambda: torch.linalg.eigvalsh(h_ours), device))
        timings["total"].append(_once(lambda: spectrum(ours()), device))
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


def fig2a_rows(repeats: int, quick: bool = False, device: torch.device = CPU) -> dict:
    """The negative-eigenvalue chapter's units of work at paper scale (smoke in ``quick``),
    and the chapter extrapolated from them.  The timing network is the paper's at its
    initialization, with a stand-in basis of the floor's rank: the costs do not depend on
    where the weights are."""
    import dataclasses

    from hessnoise import train, train_batched
    from hessnoise.experiments import floor as fl
    from hessnoise.experiments import negative_eigenvalues as ne
    from hessnoise.losses import cross_entropy
    from hessnoise.threads import threads

    cfg = ne.NegativeEigenvaluesConfig.for_scale("smoke" if quick else "paper")
    fcfg = dataclasses.replace(cfg.floor, download=False)  # timing only: the data on hand
    problem = fl.setup(fcfg, 0, device)
    p = problem.n_params
    rank = min(fcfg.n_constraints, p)
    theta = problem.theta_init
    gen = torch.Generator(device=device).manual_seed(0)
    basis = torch.randn(p, rank, generator=gen, device=device, dtype=fl.DTYPE) / p**0.5
    floor = fl.Floor(
        theta=theta, theta_start=theta, loss=problem.loss_value(theta), start_loss=0.0,
        grad_norm=0.0, max_sample_grad=0.0, iterations=0, eigenvalues=torch.ones(p),
        basis=basis, zero_tol=0.0, seconds=0.0,
    )  # fmt: skip
    windows = {
        "minibatch": (cfg.minibatch_tau, cfg.minibatch_snapshots),
        "sampled-labels": ((cfg.tau_equil, cfg.tau_measure), cfg.snapshots),
    }
    plans = [
        ne.plan_run(floor, cfg, protocol, eta, s, 0, tau=tau, snapshots=snaps)
        for protocol, (tau, snaps) in windows.items()
        for eta, s in ne.sweep_pairs(cfg)
    ]  # fmt: skip
    k = 20 if quick else 200  # steps per timing

    def batch_loss(th, xb, tb):
        return cross_entropy(problem.net(th, xb), tb)

    def sample_loss(th, xb, tb):
        return cross_entropy(problem.net(th, xb), tb, reduction="none")

    def sequential() -> None:
        draw = ne.draw_minibatch(problem, cfg.batch_size0, "sampled-labels")
        train.sgd(batch_loss, theta, draw, lr=cfg.eta0, steps=k, seed=1)

    def batched(subset: list) -> float:
        runs = [
            train_batched.SGDRun(
                theta, ne.draw_minibatch(problem, q.batch_size, q.protocol, onehot=True),
                q.eta, k, q.seed)
            for q in subset
        ]  # fmt: skip
        return timed(lambda: train_batched.sgd_batched(sample_loss, runs), repeats, device) / k

    def one_snapshot() -> None:
        ne.snapshot(problem, theta)
        ne.noise_power(problem, theta, basis, cfg.batch_size0, "sampled-labels")
        problem.loss_value(theta)

    longest = sorted(plans, key=lambda q: q.steps)[-2:]  # the tail: the smallest η, twice
    with threads("small"):
        t_step = timed(sequential, repeats, device) / k
        t_all = batched(plans)
        t_tail = batched(longest)
        t_loss = timed(lambda: problem.loss_value(theta), repeats, device)
    t_snap = timed(one_snapshot, max(1, repeats // 2), device)
    with threads("small"):
        t_gd = timed(lambda: train.gradient_descent(problem.loss, theta, lr=0.1, steps=k),
                     repeats, device) / k  # fmt: skip
    t_gn = timed(
        lambda: train.gauss_newton(problem.outputs, cross_entropy, problem.q, theta, max_iter=2,
                                   grad_tol=1e-300),
        1, device,
    ) / 2  # fmt: skip
    # Cost per batched step, a + b·(runs still going), from the two measured points.
    b = (t_all - t_tail) / (len(plans) - len(longest))
    a = t_tail - b * len(longest)
    steps = [q.steps for q in plans]
    n_snap = sum(q.snapshots for q in plans)
    n_loss = sum(q.snapshots * (q.block // q.every) for q in plans)
    n_proj = sum(q.protocol == "sampled-labels" for q in plans)
    gn_floor, gn_proj = 50, 10  # assumed Gauss–Newton iterations: floor, projection
    parts = {
        "steps": a * max(steps) + b * sum(steps),
        "snapshots": n_snap * t_snap,
        "losses": n_loss * t_loss,
        "floor": fcfg.gd_epochs * t_gd * (fcfg.floor_method == "gd+gauss-newton") + gn_floor * t_gn,
        "projections": n_proj * gn_proj * t_gn,
    }
    return {
        "fig2a_config": f"{cfg.floor.n} images at {cfg.floor.size}x{cfg.floor.size}, P = {p}, "
        f"{len(plans)} runs, {sum(steps):,} steps, {n_snap} snapshots ({problem.dataset})",
        "fig2a_sgd_step_s": t_step,
        "fig2a_batched_step_s": t_all,
        "fig2a_batched_step_runs": len(plans),
        "fig2a_batched_tail_step_s": t_tail,
        "fig2a_snapshot_s": t_snap,
        "fig2a_loss_s": t_loss,
        "fig2a_gd_step_s": t_gd,
        "fig2a_gauss_newton_iteration_s": t_gn,
        "fig2a_assumed_gauss_newton_iterations": {"floor": gn_floor, "projection": gn_proj},
        "fig2a_sequential_steps_s": sum(steps) * t_step,
        **{f"fig2a_{name}_s": value for name, value in parts.items()},
        # an upper bound: steps and snapshots one after the other
        "fig2a_extrapolated_s": sum(parts.values()),
        # a lower bound: on a GPU the snapshots run on a second thread beside the steps
        "fig2a_extrapolated_overlapped_s": sum(parts.values())
        - min(parts["steps"], parts["snapshots"]),
        "checks": {},
    }


def _once(fn, device: torch.device = CPU) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def machine(device: torch.device) -> dict:
    out = {
        "cpu": cpu_name(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": device.type,
    }
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)
        out["cuda"] = torch.version.cuda
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed repetitions of HVP rows")
    parser.add_argument("--exact-repeats", type=int, default=3)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument(
        "--rows", default="auto",
        help=f"comma-separated subset of {','.join(ROWS)}; default: hvp,exact on the CPU, all "
        "on CUDA and with --quick",
    )  # fmt: skip
    parser.add_argument("--out", default=None, help="default _build/bench/curvature[-cuda].json")
    parser.add_argument(
        "--quick", action="store_true", help="tiny models: checks the script, times nothing useful"
    )
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    rows_wanted = (
        ROWS if args.rows == "auto" and (args.quick or device.type == "cuda")
        else ("hvp", "exact") if args.rows == "auto"
        else tuple(args.rows.split(","))
    )  # fmt: skip
    unknown = [r for r in rows_wanted if r not in ROWS]
    if unknown:
        parser.error(f"--rows={args.rows!r}: unknown {unknown}; allowed: {list(ROWS)}")
    suffix = "" if device.type == "cpu" else f"-{device.type}"
    out_path = Path(args.out or repo_root() / "_build" / "bench" / f"curvature{suffix}.json")
    if device.type == "cuda":  # float32 products as float32, not TF32, in every library
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    started = time.time()
    makers = {"hvp": hvp_rows, "resnet": resnet_rows, "exact": exact_rows, "fig2a": fig2a_rows}
    result: dict = {}
    checks: dict = {}
    for name in rows_wanted:
        repeats = args.exact_repeats if name in ("exact", "fig2a") else args.repeats
        part = makers[name](repeats, args.quick, device)
        checks.update(part.pop("checks"))
        result.update(part)
        print(f"[bench] {name} rows done ({time.time() - started:.0f} s)", flush=True)

    def tolerance(key: str) -> float:
        return TOLERANCES.get(key, TOLERANCES["resnet"] if key.startswith("resnet") else 1e-4)

    failed_checks = [k for k, val in checks.items() if not val <= tolerance(k)]
    rows = []
    for key, (op, target) in TARGETS[device.type].items():
        val = result.get(key)
        ok = None if val is None else (val <= target if op == "<=" else val >= target)
        rows.append({"key": key, "value": val, "target": f"{op} {target:g}", "passed": ok})
    payload = {
        **result,
        "targets": rows,
        "correctness": checks,
        "correctness_passed": not failed_checks,
        "machine": machine(device),
        "commit": git_commit(repo_root()),
        "quick": args.quick,
        "date": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "wall_s": time.time() - started,
    }
    write_json_atomic(out_path, payload)
    print(f"correctness (relative errors): {json.dumps(checks)}")
    print(f"{'key':<40}{'value':>10}  {'target':>8}  passed")
    for r in rows:
        val = "n/a" if r["value"] is None else f"{r['value']:.3f}"
        print(f"{r['key']:<40}{val:>10}  {r['target']:>8}  {r['passed']}")
    if "grad_s" in result:
        print(f"grad_s = {result['grad_s'] * 1e3:.2f} ms ({threads} threads)")
    print(f"wrote {out_path}")
    if failed_checks:
        print(f"correctness check failed: {failed_checks}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
