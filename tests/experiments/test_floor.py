"""The Section 4.1 network and its floor: configurations, interpolation, the cache, the
per-sample and per-class gradients against autograd one sample at a time."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from test_data import tiny_images, write_idx
from tiny_network import TINY_FLOOR

from hessnoise import checkpoints, data, models
from hessnoise.experiments import floor as fl
from hessnoise.losses import cross_entropy, target_entropy
from hessnoise.scales import SCALES

F64 = torch.float64


@pytest.mark.parametrize("scale", SCALES)
def test_configs_exist_for_every_scale_and_can_interpolate(scale):
    cfg = fl.FloorConfig.for_scale(scale)
    side = cfg.size or 8
    p = models.n_params(models.mlp(side * side, [cfg.hidden], fl.N_CLASSES))
    assert p > cfg.n_constraints  # enough parameters to interpolate the smoothed targets


def test_paper_scale_is_section_4_1():
    cfg = fl.FloorConfig.for_scale("paper")
    assert (cfg.dataset, cfg.n, cfg.size, cfg.hidden) == ("mnist", 500, 14, 30)
    assert cfg.floor_method == "gd+gauss-newton" and (cfg.gd_lr, cfg.gd_epochs) == (0.1, 10_000)
    # 196·30 + 30 + 30·10 + 10 = 6,220, counted by the model itself
    assert models.n_params(models.mlp(14 * 14, [30], 10)) == fl.PAPER_PARAMS == 6220
    assert cfg.expected_params == 6220


@pytest.mark.parametrize(
    ("change", "match"),
    [({"dataset": "cifar10"}, "dataset='cifar10'"), ({"eps": 1.0}, "eps=1.0"),
     ({"floor_method": "adam"}, "floor_method='adam'"), ({"hidden": 0}, "hidden=0")],
)  # fmt: skip
def test_config_refuses_bad_values_naming_them(change, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(TINY_FLOOR, **change)


def test_floor_is_an_interpolating_minimal_valley(tiny):
    cfg, problem, floor = tiny
    assert floor.grad_norm < 1e-10 and floor.max_sample_grad < 1e-9
    assert abs(floor.loss - target_entropy(cfg.floor.eps)) < 1e-12
    assert floor.rank == cfg.floor.n_constraints  # Gauss–Newton rank N(K − 1)
    assert torch.equal(floor.theta_start, floor.theta)
    assert floor.trace == pytest.approx(floor.eigenvalues.sum().item())
    # the basis spans the non-degenerate eigenvectors: Vᵀ H V = diag(λ > tol)
    h = problem.hessian(floor.theta)
    v = floor.basis
    assert v.shape == (problem.n_params, floor.rank)
    lam = floor.eigenvalues[floor.eigenvalues > floor.zero_tol]
    assert torch.allclose(torch.diagonal(v.T @ h @ v).sort().values, lam, atol=1e-12)


def test_sample_and_class_gradients_against_autograd_per_sample(tiny):
    _cfg, problem, floor = tiny
    g = torch.Generator().manual_seed(1)
    theta = floor.theta + 0.05 * torch.randn(problem.n_params, dtype=F64, generator=g)
    grads = problem.sample_gradients(theta)
    classes = problem.class_gradients(theta)
    for k in (0, 7, 19):
        th = theta.clone().requires_grad_(True)
        out = problem.net(th, problem.x[k : k + 1])
        (ref,) = torch.autograd.grad(
            cross_entropy(out, problem.q[k : k + 1]), th, retain_graph=True
        )
        assert torch.allclose(grads[k], ref, atol=1e-13)
        (ref_c,) = torch.autograd.grad(-out.log_softmax(-1)[0, 3], th)
        assert torch.allclose(classes[k, 3], ref_c, atol=1e-13)
    # the gradient at targets q is the q-average of the class gradients
    assert torch.allclose((problem.q.unsqueeze(-1) * classes).sum(1), grads, atol=1e-13)


def test_floor_checkpoint_is_reused_and_invalidated_by_the_config(tiny, tmp_path):
    cfg, problem, floor = tiny
    first = fl.find_floor(problem, cfg.floor, 0, tmp_path)
    assert torch.equal(first.theta, floor.theta)
    state = checkpoints.load_checkpoint(tmp_path / "floor.pt")
    state["theta"] = state["theta"] + 1.0  # a cached floor is read back as it is
    checkpoints.save_checkpoint(tmp_path / "floor.pt", state)
    assert torch.equal(fl.find_floor(problem, cfg.floor, 0, tmp_path).theta, state["theta"])
    other = dataclasses.replace(cfg.floor, floor_iter=cfg.floor.floor_iter + 1)
    assert torch.equal(fl.find_floor(problem, other, 0, tmp_path).theta, floor.theta)


def test_paper_protocol_floor_starts_at_the_gradient_descent_point():
    cfg = dataclasses.replace(TINY_FLOOR, floor_method="gd+gauss-newton", gd_epochs=50)
    problem = fl.setup(cfg, 0, "cpu")
    floor = fl.find_floor(problem, cfg, 0)
    assert floor.start_loss > floor.loss + 1e-3 and floor.grad_norm < 1e-10
    # the gradient-descent point is the initialization after 50 steps of the paper's descent
    gd = problem.theta_init
    for _ in range(50):
        gd = gd - 0.1 * torch.func.grad(problem.loss)(gd)
    assert torch.allclose(floor.theta_start, gd, atol=1e-12)


@pytest.mark.skipif(not data.fashion_mnist_available(), reason="needs Fashion-MNIST")
def test_a_fallback_stands_in_for_missing_data_and_says_so(tmp_path, monkeypatch):
    # MNIST is not under the data root and downloads are off: Fashion-MNIST stands in
    monkeypatch.setenv("HESSNOISE_DATA", str(tmp_path))
    monkeypatch.setenv("HESSNOISE_OFFLINE", "1")
    cfg = fl.FloorConfig(dataset="mnist", n=20, size=7, hidden=8, download=True)
    with pytest.raises(data.DataMissing, match="mnist not found"):
        fl.setup(cfg, 0, "cpu")
    stand_in = dataclasses.replace(cfg, fallback="fashion-mnist")
    problem = fl.setup(stand_in, 0, "cpu")
    assert problem.dataset == "fashion-mnist" and problem.x.shape == (20, 49)
    facts = fl.floor_facts(problem, fl.find_floor(problem, stand_in, 0), stand_in)
    assert facts["dataset"] == "fashion-mnist" and facts["dataset_requested"] == "mnist"
    assert facts["dataset_stands_in"] == 1
    # a floor found on the stand-in is cached under another key than one found on MNIST
    assert fl.floor_fingerprint(problem, stand_in, 0) != fl.floor_fingerprint(
        dataclasses.replace(problem, dataset="mnist"), stand_in, 0
    )
    # with MNIST's files under the data root, MNIST is used
    images, labels = tiny_images(40)
    for prefix in ("train", "t10k"):
        write_idx(tmp_path / "MNIST" / "raw", prefix, images, labels)
    assert fl.setup(stand_in, 0, "cpu").dataset == "mnist"


def test_paper_scale_falls_back_to_fashion_mnist_at_the_same_size():
    assert fl.FloorConfig.for_scale("paper").fallback == "fashion-mnist"
    assert fl.FloorConfig.for_scale("small").fallback is None
