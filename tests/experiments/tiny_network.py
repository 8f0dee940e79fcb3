"""A tiny version of the Section 4.1 network, shared by the experiment tests: 20 scikit-learn
digits at 4×4 pixels, 24 hidden units (P = 650 > N(K − 1) = 180), its floor and the sweeps'
settings."""

from __future__ import annotations

from hessnoise.experiments import floor as fl
from hessnoise.experiments import negative_eigenvalues as ne

TINY_FLOOR = fl.FloorConfig(dataset="digits", n=20, size=4, hidden=24)
TINY = ne.NegativeEigenvaluesConfig(
    floor=TINY_FLOOR, etas=(0.025, 0.05, 0.1), batch_sizes=(5, 10, 20), eta0=0.05,
    batch_size0=10, tau_equil=10, tau_measure=12, snapshots=3, minibatch_tau=(2, 2),
    minibatch_snapshots=1, bootstrap=100, checkpoint_every=50, seeds=1,
)  # fmt: skip
