"""hessnoise: how noise shapes the Hessian spectrum (Wei & Schwab, 2019), as a tested package.

Modules, one idea each:

* :mod:`hessnoise.curvature` — Hessian-vector products (``HessianOperator``, at any θ),
  Hutchinson, Hutch++, exact spectra, Lanczos, stochastic Lanczos quadrature; one method per
  module, named after its paper;
* :mod:`hessnoise.valley` — toy minimal valleys (eq. 1) and noise models (re-exporting its
  siblings' names); :mod:`hessnoise.valley_sgd` — heavy-ball SGD on replicas of a valley;
  :mod:`hessnoise.valley_theory` — the exact stationary statistics and the drift they predict;
  :mod:`hessnoise.drift` — how noise moves a toy valley's spectrum, measured against theory;
* :mod:`hessnoise.params` — a network as f(θ, x); :mod:`hessnoise.train` — optimizers, θ in and
  θ out (L-BFGS, gradient descent, Gauss–Newton, SGD with checkpoints);
  :mod:`hessnoise.train_batched` — many SGD runs advanced together;
  :mod:`hessnoise.losses` — the label-smoothed cross-entropy and its floor;
  :mod:`hessnoise.projection` — the gradient-flow limit map Φ onto a floor;
  :mod:`hessnoise.scale_invariance` — BatchNorm's scale symmetries and the trace that
  ignores them;
* :mod:`hessnoise.data`, :mod:`hessnoise.models` — datasets and networks;
* :mod:`hessnoise.stats` — estimates with standard errors, intervals and fits;
  :mod:`hessnoise.checkpoints` — atomic checkpoints and fingerprints;
  :mod:`hessnoise.threads` — thread counts per workload; :mod:`hessnoise.provenance` — the
  commit, processor and run time a result records;
* :mod:`hessnoise.report`, :mod:`hessnoise.book` (a package: sources, needs, execute, html,
  command), :mod:`hessnoise.claims`, :mod:`hessnoise.scales`, :mod:`hessnoise.progress`,
  :mod:`hessnoise.sphinx_sources` — the executable book: a chapter's record, the build, the
  claims table, the three scales, progress of long loops, the .md download;
* :mod:`hessnoise.experiments` — the experiments, one module (or a few, along the data flow) per
  chapter; :mod:`hessnoise.figures` — their figures and tables, one module per chapter.
"""

from importlib import metadata

try:
    __version__ = metadata.version("hessnoise")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+local"
