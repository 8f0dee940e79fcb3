"""Datasets, loaded through torchvision's own readers.

* Fashion-MNIST ships with this project's machines as Debian's ``dataset-fashion-mnist``
  (gzipped idx files in ``/usr/share/datasets/fashion-mnist``).  :func:`fashion_mnist` copies
  them, decompressed, into torchvision's layout under the data root and reads them with
  ``torchvision.datasets.FashionMNIST``.  A folder ``$HESSNOISE_DATA/FashionMNIST/raw`` holding
  the idx files (plain or ``.gz``) works as well.
* MNIST, CIFAR-10 and CIFAR-100 come through torchvision, downloading only when
  ``download=True`` is passed.
* The scikit-learn digits (8×8) ship with scikit-learn.

:func:`load` turns any of them into a float tensor pair ``(X, y)``: a class-balanced, seeded
subset, optionally average-pooled to ``size × size`` pixels, flattened and scaled to [0, 1].
Offline with the data missing, every loader raises :class:`DataMissing`, which says how to get it;
``HESSNOISE_OFFLINE=1`` turns every download off (no waiting for a connection that never comes).
:func:`available` says whether a dataset is on this machine without reading or downloading it,
and :func:`ensure` fetches it where allowed or raises that same error: the book command runs it
for every chapter's data before any chapter runs.

Run ``python -m hessnoise.data check`` to see whether Fashion-MNIST is available.
"""

from __future__ import annotations

import gzip
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hessnoise._validate import choice, positive_int

DATASETS = ("fashion-mnist", "mnist", "cifar10", "cifar100", "digits")
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
HOW_TO_GET_FASHION = (
    "Install Debian's package (sudo apt-get install dataset-fashion-mnist; `make book` and "
    "`make test` try this themselves), or put the four idx files, plain or .gz, in "
    "$HESSNOISE_DATA/FashionMNIST/raw, or pass download=True on a machine with internet access."
)


class DataMissing(FileNotFoundError):
    """A dataset is not on this machine; the message says how to get it."""


def offline() -> bool:
    """Whether ``$HESSNOISE_OFFLINE`` forbids downloads (set on machines with no internet,
    where a download would only wait for a connection that never comes)."""
    return os.environ.get("HESSNOISE_OFFLINE", "") not in ("", "0")


def data_root(root: str | Path | None = None) -> Path:
    """``root``, else ``$HESSNOISE_DATA``, else ``~/.cache/hessnoise/data``."""
    if root is not None:
        return Path(root)
    env = os.environ.get("HESSNOISE_DATA")
    return Path(env) if env else Path.home() / ".cache" / "hessnoise" / "data"


def _gunzip_atomic(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", dir=dst.parent)
    try:
        with gzip.open(src, "rb") as fin, os.fdopen(fd, "wb") as fout:
            shutil.copyfileobj(fin, fout)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fashion_raw(root: Path) -> Path:
    """Make ``root/FashionMNIST/raw`` hold the four decompressed idx files, if they exist."""
    raw = root / "FashionMNIST" / "raw"
    for name in IDX_FILES:
        if (raw / name).exists():
            continue
        for candidate in (raw / f"{name}.gz", DEBIAN_FASHION / f"{name}.gz"):
            if candidate.exists():
                _gunzip_atomic(candidate, raw / name)
                break
    return raw


def fashion_mnist_available(root: str | Path | None = None) -> bool:
    """Whether Fashion-MNIST can be loaded without a download."""
    raw = data_root(root) / "FashionMNIST" / "raw"
    return all(
        (raw / n).exists() or (raw / f"{n}.gz").exists() or (DEBIAN_FASHION / f"{n}.gz").exists()
        for n in IDX_FILES
    )


def fashion_mnist(train: bool = True, root: str | Path | None = None, download: bool = False):
    """``torchvision.datasets.FashionMNIST`` from Debian's files or the data root."""
    from torchvision.datasets import FashionMNIST

    root = data_root(root)
    raw = _fashion_raw(root)
    download = download and not offline()
    if not download and not all((raw / n).exists() for n in IDX_FILES):
        raise DataMissing(_missing_message("fashion-mnist", root))
    return FashionMNIST(str(root), train=train, download=download)


# The files torchvision reads, relative to the data root (its own layout; MNIST's idx files
# decompressed, as torchvision leaves them after a download).
TORCHVISION_FILES = {
    "mnist": tuple(f"MNIST/raw/{n}" for n in IDX_FILES),
    "cifar10": tuple(
        f"cifar-10-batches-py/{n}"
        for n in ("batches.meta", *(f"data_batch_{k}" for k in range(1, 6)), "test_batch")
    ),
    "cifar100": tuple(f"cifar-100-python/{n}" for n in ("meta", "train", "test")),
}


def _missing_message(name: str, root: Path, detail: str = "") -> str:
    if name == "fashion-mnist":
        raw = root / "FashionMNIST" / "raw"
        return f"Fashion-MNIST not found in {raw} nor {DEBIAN_FASHION}. {HOW_TO_GET_FASHION}"
    detail = f" ({detail})" if detail else ""
    return (
        f"{name} not found under {root}{detail}. Pass download=True on a machine with internet "
        f"access (torchvision downloads it into {root}), or copy torchvision's files there, "
        "or set HESSNOISE_DATA to the folder that holds them."
    )


def available(name: str, root: str | Path | None = None) -> bool:
    """Whether dataset ``name`` (one of :data:`DATASETS`) can be loaded without a download:
    its files are in torchvision's layout under the data root (Fashion-MNIST: or Debian's
    package).  Looks at file names only; reads and downloads nothing."""
    choice("name", name, DATASETS)
    if name == "digits":  # ships with scikit-learn
        return True
    if name == "fashion-mnist":
        return fashion_mnist_available(root)
    base = data_root(root)
    return all((base / f).exists() for f in TORCHVISION_FILES[name])


def ensure(name: str, *, download: bool = False, root: str | Path | None = None) -> None:
    """Make sure dataset ``name`` can be loaded: fetch it with torchvision when it is missing
    and ``download`` is true; raise :class:`DataMissing`, saying how to get it, otherwise (or
    when the download fails).  What the book command runs for every chapter before any runs."""
    if available(name, root):
        return
    if download and name != "digits":
        try:
            for train in (True, False):
                dataset(name, train, root, download=True)
        except Exception as err:  # offline: URLError, OSError, RuntimeError from torchvision
            cause = err.__cause__ or err
            reason = " ".join(str(cause).split())
            reason = reason if len(reason) < 300 else reason[:300] + " ..."
            raise DataMissing(
                _missing_message(name, data_root(root), f"the download failed: {reason}")
            ) from None
        if available(name, root):
            return
    raise DataMissing(_missing_message(name, data_root(root)))


def _torchvision(name: str, train: bool, root: str | Path | None, download: bool):
    from torchvision import datasets

    cls = {"mnist": datasets.MNIST, "cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}[
        name
    ]
    root = data_root(root)
    try:
        return cls(str(root), train=train, download=download and not offline())
    except RuntimeError as err:  # torchvision: "Dataset not found ..." when offline and missing
        raise DataMissing(_missing_message(name, root, str(err))) from err


def dataset(name: str, train: bool = True, root: str | Path | None = None, download: bool = False):
    """The raw dataset object for ``name`` (one of :data:`DATASETS` except ``'digits'``)."""
    choice("name", name, DATASETS[:-1])
    if name == "fashion-mnist":
        return fashion_mnist(train, root, download)
    return _torchvision(name, train, root, download)


def _images_and_labels(
    name: str, train: bool, root, download: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """All images as float ``(N, C, H, W)`` in [0, 1] and labels ``(N,)`` int64."""
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        x = torch.as_tensor(d.images, dtype=torch.float64).unsqueeze(1) / 16.0
        return x, torch.as_tensor(d.target, dtype=torch.long)
    ds = dataset(name, train, root, download)
    data = ds.data
    if isinstance(data, np.ndarray):  # CIFAR: (N, H, W, C) uint8
        x = torch.as_tensor(data).permute(0, 3, 1, 2)
    else:  # MNIST family: (N, H, W) uint8
        x = data.unsqueeze(1)
    return x.to(torch.float64) / 255.0, torch.as_tensor(ds.targets, dtype=torch.long)


def balanced_subset(labels: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """Indices of ``n`` samples, as equal per class as ``n`` allows, drawn with ``seed``."""
    positive_int("n", n)
    if n > labels.numel():
        raise ValueError(f"n={n} is out of range; allowed: an integer in [1, {labels.numel()}]")
    gen = torch.Generator().manual_seed(seed)
    classes = labels.unique()
    per_class = [torch.nonzero(labels == c).flatten() for c in classes]
    per_class = [idx[torch.randperm(idx.numel(), generator=gen)] for idx in per_class]
    quota = [n // len(classes) + (k < n % len(classes)) for k in range(len(classes))]
    picked = torch.cat([idx[:q] for idx, q in zip(per_class, quota, strict=True)])
    if picked.numel() < n:  # a class ran short: fill from the rest at random
        rest = torch.ones(labels.numel(), dtype=torch.bool)
        rest[picked] = False
        others = torch.nonzero(rest).flatten()
        picked = torch.cat(
            [picked, others[torch.randperm(others.numel(), generator=gen)[: n - picked.numel()]]]
        )
    return picked[torch.randperm(picked.numel(), generator=gen)]


def load(
    name: str,
    n: int | None = None,
    *,
    train: bool = True,
    size: int | None = None,
    seed: int = 0,
    root: str | Path | None = None,
    download: bool = False,
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A dataset as tensors: ``X`` ``(n, C·size·size)`` in [0, 1] and ``y`` ``(n,)`` int64.

    Parameters
    ----------
    name : one of :data:`DATASETS`.
    n : number of samples, class-balanced and drawn with ``seed``; ``None`` for all.
    train : training or test split (ignored for ``'digits'``).
    size : side in pixels after average pooling (must divide the original side); ``None``
        keeps the original resolution.
    """
    choice("name", name, DATASETS)
    if n is not None:
        positive_int("n", n)
    if size is not None:
        positive_int("size", size)
    x, y = _images_and_labels(name, train, root, download)
    if size is not None and size != x.shape[-1]:
        side = x.shape[-1]
        if side % size:
            allowed = [d for d in range(1, side + 1) if side % d == 0]
            raise ValueError(f"size={size} must divide the image side {side}; allowed: {allowed}")
        x = F.avg_pool2d(x, side // size)
    if n is not None:
        idx = balanced_subset(y, n, seed)
        x, y = x[idx], y[idx]
    return x.reshape(x.shape[0], -1).to(dtype), y


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] != ["check"]:
        print("usage: python -m hessnoise.data check", file=sys.stderr)
        return 2
    if fashion_mnist_available():
        print(f"Fashion-MNIST: available (root {data_root()}, Debian files {DEBIAN_FASHION})")
        return 0
    print(f"Fashion-MNIST: missing. {HOW_TO_GET_FASHION}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
