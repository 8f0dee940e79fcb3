"""The book's figures and tables, one module per chapter, in one house style.

* :mod:`~hessnoise.figures.style` — the style (applied with ``plt.style.context``, no global
  state) and the colours, named after what they mean;
* :mod:`~hessnoise.figures.minimal_valley`, :mod:`~hessnoise.figures.trace_decrease`,
  :mod:`~hessnoise.figures.designing_noise`, :mod:`~hessnoise.figures.negative_eigenvalues`,
  :mod:`~hessnoise.figures.curved_floor`, :mod:`~hessnoise.figures.sgd_noise`,
  :mod:`~hessnoise.figures.slow_flow`, :mod:`~hessnoise.figures.projected_paths`,
  :mod:`~hessnoise.figures.trace_along_path`, :mod:`~hessnoise.figures.curvature` — each
  chapter's figures (functions returning a matplotlib ``Figure``, with labelled axes, a legend
  and the theory beside the measurement) and tables (functions returning Markdown).
"""
