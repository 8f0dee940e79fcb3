r"""The label-smoothed cross-entropy of the paper's experiments, and its floor.

The paper trains with label smoothing (Szegedy et al., 2016) "to make a true minimum
exist".  With smoothed targets q = (1 − ε)·onehot(y) + ε/K the loss is PyTorch's
``F.cross_entropy(out, q)`` with probability targets (which equals
``CrossEntropyLoss(label_smoothing=ε)`` on the labels), and its floor, reached where the
network outputs q exactly, is the entropy H(q) of the targets (Gibbs' inequality).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from hessnoise._validate import number, positive_int

cross_entropy = F.cross_entropy
"""Mean of −Σ_c t_c log softmax(out)_c, for class indices ``(B,)`` or probabilities ``(B, K)``."""


def smoothed_targets(y: Tensor, n_classes: int, eps: float) -> Tensor:
    """Label-smoothed targets q = (1 − ε)·onehot(y) + ε/K, ``(M, K)`` float64 on y's device."""
    positive_int("n_classes", n_classes)
    number("eps", eps, lo=0, hi=1, hi_open=True)
    q = F.one_hot(y, n_classes).to(torch.float64) * (1 - eps)
    return q + eps / n_classes


def target_entropy(eps: float, n_classes: int = 10) -> float:
    """H(q) = −(1 − ε + ε/K) log(1 − ε + ε/K) − (K − 1)(ε/K) log(ε/K): the floor of the
    label-smoothed cross-entropy, reached where the network interpolates q."""
    number("eps", eps, lo=0, hi=1, hi_open=True)
    positive_int("n_classes", n_classes)
    top, rest = 1 - eps + eps / n_classes, eps / n_classes
    return -top * math.log(top) - (0.0 if rest == 0 else (n_classes - 1) * rest * math.log(rest))
