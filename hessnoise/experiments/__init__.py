"""The experiments, one module per chapter, or a few along the data flow (producing runs:
torch, slow, checkpointed; analysing them: plain numbers).

* toy valleys: :mod:`~hessnoise.experiments.minimal_valley`,
  :mod:`~hessnoise.experiments.trace_decrease`, :mod:`~hessnoise.experiments.designing_noise`;
* the Section 4.1 network and Fig. 2(a): :mod:`~hessnoise.experiments.floor` (the network and
  its floor), :mod:`~hessnoise.experiments.floor_sgd` (one SGD run at the floor),
  :mod:`~hessnoise.experiments.floor_sgd_batched` (runs advanced together),
  :mod:`~hessnoise.experiments.negative_eigenvalues` (the sweeps, whose design of an η sweep
  and an S sweep sharing their centre is :mod:`~hessnoise.experiments.sweep_design`),
  :mod:`~hessnoise.experiments.a3_fits` (their fits), :mod:`~hessnoise.experiments.curved_floor`
  (the curved-floor probe);
* SGD noise on that network: :mod:`~hessnoise.experiments.noise_matrices` (the exact matrices
  at one state), :mod:`~hessnoise.experiments.noise_fit` (one noise against H),
  :mod:`~hessnoise.experiments.noise_covariance` (eq. 4 and 5 at one state),
  :mod:`~hessnoise.experiments.noise_minibatch` (against actual mini-batches),
  :mod:`~hessnoise.experiments.timescales` (Sec. 2.1.3), :mod:`~hessnoise.experiments.sgd_noise`
  (along training);
* the slow flow along the floor: :mod:`~hessnoise.experiments.slow_flow_floor`,
  :mod:`~hessnoise.experiments.slow_flow`, :mod:`~hessnoise.experiments.slow_flow_runs`,
  :mod:`~hessnoise.experiments.slow_flow_fits`;
* projected paths (Fig. 1, Fig. 4): :mod:`~hessnoise.experiments.path_problem`,
  :mod:`~hessnoise.experiments.path_protocol`, :mod:`~hessnoise.experiments.projected_paths`,
  :mod:`~hessnoise.experiments.path_analysis`;
* the trace along them (Fig. 3): :mod:`~hessnoise.experiments.path_curvature`,
  :mod:`~hessnoise.experiments.trace_along_path`, :mod:`~hessnoise.experiments.trace_analysis`;
* the package tour: :mod:`~hessnoise.experiments.curvature_tour`.
"""
