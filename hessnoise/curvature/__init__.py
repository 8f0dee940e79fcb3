"""Curvature of a loss over a dataset: Hessian-vector products, trace estimators, exact
spectra, Lanczos and stochastic Lanczos quadrature.

Every estimator takes a *matvec*: a function from probes ``(k, P)`` to products ``(k, P)``.
A :class:`HessianOperator` is one; so is :func:`dense_matvec` of a symmetric matrix.  One
module per method, named after its paper where there is one.
"""

from hessnoise.curvature.batches import model_mode
from hessnoise.curvature.exact import Spectrum, exact_spectrum, hessian_matrix, spectrum
from hessnoise.curvature.hutchinson1989 import hutchinson
from hessnoise.curvature.lanczos import Extremes, LanczosResult, extreme_eigenvalues, lanczos
from hessnoise.curvature.meyer2021hutchpp import GroupTraceEstimate, hutchpp, hutchpp_groups
from hessnoise.curvature.operator import HessianOperator, gradient
from hessnoise.curvature.probes import TraceEstimate, dense_matvec
from hessnoise.curvature.ubaru2017slq import SLQ, slq

__all__ = [
    "SLQ",
    "Extremes",
    "GroupTraceEstimate",
    "HessianOperator",
    "LanczosResult",
    "Spectrum",
    "TraceEstimate",
    "dense_matvec",
    "exact_spectrum",
    "extreme_eigenvalues",
    "gradient",
    "hessian_matrix",
    "hutchinson",
    "hutchpp",
    "hutchpp_groups",
    "lanczos",
    "model_mode",
    "slq",
    "spectrum",
]
