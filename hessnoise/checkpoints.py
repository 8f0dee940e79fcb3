"""Checkpoints that survive a kill: atomic writes, and fingerprints of what a result depends on.

A long run saves its state with :func:`save_checkpoint` (a temporary file, then
``os.replace``: a reader never sees half a file) and finds it again with
:func:`load_checkpoint`.  A cached result is stored with the :func:`fingerprint` of
everything it depends on (configuration, seed, starting point via :func:`tensor_hash`, the
checkpoint format), and is used only when the fingerprint still matches: a changed
configuration recomputes instead of reading a stale result.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """``torch.save`` through a temporary file and ``os.replace``: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path | None) -> dict[str, Any] | None:
    """The state saved by :func:`save_checkpoint`, or ``None`` when there is no file.

    Loaded with ``weights_only=True``: a checkpoint holds tensors, numbers, strings, lists and
    dicts, never pickled code.
    """
    if path is None or not Path(path).exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def load_matching(path: str | Path | None, key: str) -> dict[str, Any] | None:
    """The checkpoint at ``path`` if its ``"fingerprint"`` is ``key``, else ``None``."""
    state = load_checkpoint(path)
    return state if state is not None and state.get("fingerprint") == key else None


def tensor_hash(t: Tensor) -> str:
    """SHA-1 of a tensor's bytes (on the CPU): two tensors hash alike only if bit-identical."""
    return hashlib.sha1(t.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def fingerprint(*parts: Any) -> str:
    """SHA-1 of the JSON form of ``parts`` (dataclasses as dicts via ``default=str``)."""
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
