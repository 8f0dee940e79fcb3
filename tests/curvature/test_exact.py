"""The exact path: dense Hessians and spectra against torch.autograd.functional.hessian and
closed forms."""

import math

import numpy as np
import pytest
import torch
from helpers import dense_reference, rel_err
from test_operator import bn_cnn

from hessnoise import models
from hessnoise.curvature import HessianOperator, Spectrum, exact_spectrum, hessian_matrix, spectrum

F64 = torch.float64


@pytest.mark.parametrize("chunk", [1, 7, 128])
def test_dense_hessian_of_mlp(chunk):
    torch.manual_seed(0)
    net = models.mlp(7, [6], 4, seed=3)
    x, y = torch.randn(30, 7, dtype=F64), torch.randint(0, 4, (30,))
    loss = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    href = dense_reference(net, loss, x, y)
    h = hessian_matrix(
        HessianOperator(net, loss, list(zip(x.split([11, 19]), y.split([11, 19]), strict=True))),
        chunk=chunk,
    )
    assert rel_err(h, href) < 1e-10 and torch.equal(h, h.T)


def test_dense_hessian_of_cnn_with_batchnorm():
    net, loss, x, y = bn_cnn()
    href = dense_reference(net, loss, x, y)
    assert rel_err(hessian_matrix(HessianOperator(net, loss, (x, y))), href) < 1e-10


def test_dense_from_plain_matvec():
    a = torch.randn(9, 9, dtype=F64)
    a = a + a.T
    assert torch.allclose(hessian_matrix(lambda v: v @ a, 9, chunk=4), a, atol=1e-14)


def test_spectrum_summary_closed_forms():
    lam = torch.tensor([-3.0, -0.5, -1e-18, 0.0, 2.0, 5.0, 7.0], dtype=F64)
    q, _ = torch.linalg.qr(torch.randn(7, 7, dtype=F64))
    sp = spectrum((q * lam) @ q.T)
    np.testing.assert_allclose(sp.eigenvalues.numpy(), lam.numpy(), atol=1e-13)
    assert sp.trace == pytest.approx(10.5, abs=1e-12)
    assert sp.n_negative() == 2 and sp.sum_negative() == pytest.approx(-3.5, abs=1e-12)
    assert sp.n_negative(tol=0.6) == 1
    assert sp.logdet_top(3) == pytest.approx(math.log(2 * 5 * 7), abs=1e-12)
    with pytest.raises(ValueError, match="n=5: the 5-th largest eigenvalue"):
        sp.logdet_top(5)
    with pytest.raises(ValueError, match="n=8 is out of range"):
        sp.top(8)
    with pytest.raises(ValueError, match="square"):
        spectrum(torch.zeros(2, 3))


def test_exact_spectrum_matches_numpy():
    torch.manual_seed(1)
    net = models.mlp(4, [5], 3, seed=1)
    x, y = torch.randn(25, 4, dtype=F64), torch.randint(0, 3, (25,))
    loss = torch.nn.CrossEntropyLoss()
    sp = exact_spectrum(net, loss, (x, y))
    ref = np.linalg.eigvalsh(dense_reference(net, loss, x, y).numpy())
    np.testing.assert_allclose(sp.eigenvalues.numpy(), ref, atol=1e-12)
    assert isinstance(sp, Spectrum) and sp.dim == ref.size
