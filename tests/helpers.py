"""Shared helpers of the curvature tests.  The reference Hessian is
``torch.autograd.functional.hessian`` (see hessnoise.curvature.reference), which shares no
code with the operator under test."""

from __future__ import annotations

from hessnoise.curvature.reference import autograd_hessian as dense_reference
from hessnoise.curvature.reference import rel_err

__all__ = ["dense_reference", "rel_err"]
