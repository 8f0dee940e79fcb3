"""The operator over data sharded across 2 torchrun processes (gloo, CPU) matches one process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch.distributed as dist

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


@pytest.mark.slow
@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")
def test_two_process_gloo_matches_single_process(tmp_path):
    sys.path.insert(0, str(HERE))
    from dist_worker import measure, problem

    from hessnoise.curvature import HessianOperator

    out = tmp_path / "dist.json"
    # the workers import hessnoise from this checkout, installed or not
    path = os.pathsep.join([str(HERE), str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(HERE / "dist_worker.py"), str(out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    got = json.loads(out.read_text())

    net, loss_fn, x, y, probes = problem()
    ref = measure(HessianOperator(net, loss_fn, (x, y), distributed=False), probes)
    assert got["n_samples"] == ref["n_samples"] == 37
    for key in ("hv_batched", "hv_single", "grad", "dense"):
        a, b = np.asarray(got[key]), np.asarray(ref[key])
        assert np.abs(a - b).max() <= 1e-10 * np.abs(b).max(), key
    for key in ("loss", "trace"):
        assert abs(got[key] - ref[key]) <= 1e-10 * abs(ref[key]), key
