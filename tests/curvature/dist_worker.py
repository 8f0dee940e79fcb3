"""Worker for tests/curvature/test_distributed.py, launched with torchrun (2 CPU processes, gloo).

Each rank holds an uneven shard of one dataset; rank 0 writes what the distributed operator
and estimators returned, for the test to compare with a single process.
"""

import json
import sys

import torch
import torch.distributed as dist

from hessnoise import models
from hessnoise.curvature import HessianOperator, hessian_matrix, hutchinson

F64 = torch.float64


def problem():
    gen = torch.Generator().manual_seed(0)
    net = models.mlp(6, [8], 3, seed=0)
    x = torch.randn(37, 6, generator=gen, dtype=F64)
    y = torch.randint(0, 3, (37,), generator=gen)
    probes = torch.randn(4, sum(p.numel() for p in net.parameters()), generator=gen, dtype=F64)
    return net, torch.nn.CrossEntropyLoss(label_smoothing=0.1), x, y, probes


def measure(op, probes):
    loss, grad = op.loss_and_gradient()
    return {
        "hv_batched": op(probes).tolist(),
        "hv_single": op(probes[0]).tolist(),
        "loss": loss,
        "grad": grad.tolist(),
        "trace": hutchinson(op, op.dim, budget=32, seed=3).value,
        "dense": hessian_matrix(op).tolist(),
        "n_samples": op.n_samples,
    }


if __name__ == "__main__":
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    net, loss_fn, x, y, probes = problem()
    xs, ys = x[rank::world], y[rank::world]  # 19 and 18 samples
    op = HessianOperator(net, loss_fn, list(zip(xs.split(5), ys.split(5), strict=True)))
    out = measure(op, probes)
    if rank == 0:
        with open(sys.argv[1], "w") as fh:
            json.dump(out, fh)
    dist.barrier()
    dist.destroy_process_group()
