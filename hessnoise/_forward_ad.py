"""Forward-mode AD, loaded quietly.

The first forward-mode derivative in a process makes torch load its decompositions with
``torch.jit.script``, which emits a deprecation ``FutureWarning`` from inside torch.  In a
notebook that warning reaches stderr, and the book treats stderr as an error, so modules that
use ``torch.func.jvp`` import this module first: it loads them once with the warning silenced.
"""

import warnings

import torch


def _load() -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
        x = torch.zeros(1, dtype=torch.float64)
        torch.func.jvp(torch.sin, (x,), (x,))


_load()
