"""The loaders run torchvision's real readers on tiny files written in its on-disk formats."""

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from hessnoise import data


def write_idx(folder, prefix, images, labels, gz=False):
    """Write torchvision's MNIST-family raw files (big-endian idx3/idx1)."""
    folder.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape
    blobs = {
        f"{prefix}-images-idx3-ubyte": struct.pack(">IIII", 2051, n, h, w) + images.tobytes(),
        f"{prefix}-labels-idx1-ubyte": struct.pack(">II", 2049, n) + labels.tobytes(),
    }
    for name, blob in blobs.items():
        if gz:
            with gzip.open(folder / f"{name}.gz", "wb") as fh:
                fh.write(blob)
        else:
            (folder / name).write_bytes(blob)


def tiny_images(n=20, side=28, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, side, side), dtype=np.uint8), (np.arange(n) % 10).astype(
        np.uint8
    )


def test_mnist_loader_reads_torchvision_files_pools_and_balances(tmp_path):
    images, labels = tiny_images()
    for prefix in ("train", "t10k"):
        write_idx(tmp_path / "MNIST" / "raw", prefix, images, labels)
    x, y = data.load("mnist", 10, size=14, root=tmp_path, seed=1)
    assert x.shape == (10, 196) and x.dtype == torch.float64
    assert sorted(y.tolist()) == list(range(10))  # one per class
    # Independent reference: 2×2 block means of the raw bytes, scaled to [0, 1].
    ref = images.reshape(20, 14, 2, 14, 2).mean(axis=(2, 4)) / 255.0
    idx = data.balanced_subset(torch.as_tensor(labels, dtype=torch.long), 10, seed=1).numpy()
    np.testing.assert_allclose(x.numpy(), ref[idx].reshape(10, -1))
    np.testing.assert_array_equal(y.numpy(), labels[idx])


def test_fashion_mnist_from_gz_in_data_root(tmp_path, monkeypatch):
    images, labels = tiny_images(seed=3)
    for prefix in ("train", "t10k"):
        write_idx(tmp_path / "FashionMNIST" / "raw", prefix, images, labels, gz=True)
    monkeypatch.setattr(data, "DEBIAN_FASHION", tmp_path / "nowhere")
    monkeypatch.setenv("HESSNOISE_DATA", str(tmp_path))
    assert data.fashion_mnist_available()
    x, y = data.load("fashion-mnist", train=False)
    assert x.shape == (20, 784)
    np.testing.assert_allclose(x.numpy() * 255.0, images.reshape(20, -1).astype(float))
    np.testing.assert_array_equal(y.numpy(), labels)


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_FASHION", tmp_path / "nowhere")
    assert not data.fashion_mnist_available(tmp_path)
    with pytest.raises(data.DataMissing, match="apt-get install dataset-fashion-mnist"):
        data.load("fashion-mnist", 10, root=tmp_path)


def test_missing_torchvision_dataset_offline_is_a_clear_error(tmp_path):
    with pytest.raises(data.DataMissing, match="download=True"):
        data.load("cifar10", 10, root=tmp_path)


def test_availability_follows_torchvision_layout_without_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_FASHION", tmp_path / "nowhere")
    for name in ("mnist", "fashion-mnist", "cifar10", "cifar100"):
        assert not data.available(name, tmp_path)
        with pytest.raises(data.DataMissing, match="not found"):  # the loaders' own message
            data.ensure(name, root=tmp_path)
    assert data.available("digits", tmp_path)  # ships with scikit-learn
    images, labels = tiny_images()
    write_idx(tmp_path / "MNIST" / "raw", "train", images, labels)
    assert not data.available("mnist", tmp_path)  # the test split is still missing
    write_idx(tmp_path / "MNIST" / "raw", "t10k", images, labels)
    assert data.available("mnist", tmp_path)
    data.ensure("mnist", root=tmp_path)
    write_idx(tmp_path / "FashionMNIST" / "raw", "train", images, labels, gz=True)
    write_idx(tmp_path / "FashionMNIST" / "raw", "t10k", images, labels, gz=True)
    assert data.available("fashion-mnist", tmp_path)
    with pytest.raises(ValueError, match="name='imagenet'"):
        data.available("imagenet")


def test_ensure_with_a_failed_download_says_how_to_get_the_data(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(data, "dataset", offline)
    with pytest.raises(data.DataMissing, match=r"(?s)mnist not found.*download failed: no network"):
        data.ensure("mnist", download=True, root=tmp_path)


def _cifar_files(root, n_classes, folder, train_names, test_name, meta_name, label_key, meta_key):
    rng = np.random.default_rng(0)
    (root / folder).mkdir(parents=True)
    arrays = {}
    for name in (*train_names, test_name):
        imgs = rng.integers(0, 256, size=(4, 3072), dtype=np.uint8)
        labs = list(rng.integers(0, n_classes, size=4))
        arrays[name] = (imgs, labs)
        with open(root / folder / name, "wb") as fh:
            pickle.dump({"data": imgs, label_key: labs}, fh)
    with open(root / folder / meta_name, "wb") as fh:
        pickle.dump({meta_key: [f"class{i}" for i in range(n_classes)]}, fh)
    return arrays


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_loaders_read_torchvision_pickles(tmp_path, monkeypatch, name):
    import torchvision.datasets.cifar as cifar

    # torchvision checks the md5 of the real archive's files; these are tiny stand-ins.
    monkeypatch.setattr(cifar.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(cifar, "check_integrity", lambda *a, **k: True)
    assert not data.available(name, tmp_path)
    if name == "cifar10":
        arrays = _cifar_files(
            tmp_path,
            10,
            "cifar-10-batches-py",
            [f"data_batch_{i}" for i in range(1, 6)],
            "test_batch",
            "batches.meta",
            "labels",
            "label_names",
        )
    else:
        arrays = _cifar_files(
            tmp_path,
            100,
            "cifar-100-python",
            ["train"],
            "test",
            "meta",
            "fine_labels",
            "fine_label_names",
        )
    test_key = "test_batch" if name == "cifar10" else "test"
    assert data.available(name, tmp_path)  # the same files torchvision reads
    data.ensure(name, root=tmp_path)
    x, y = data.load(name, train=False, root=tmp_path, size=16)
    imgs, labs = arrays[test_key]
    ref = imgs.reshape(4, 3, 16, 2, 16, 2).mean(axis=(3, 5)) / 255.0
    np.testing.assert_allclose(x.numpy(), ref.reshape(4, -1))
    assert y.tolist() == [int(v) for v in labs]


def test_digits_ship_with_sklearn():
    x, y = data.load("digits", 50, seed=0)
    assert x.shape == (50, 64) and float(x.max()) <= 1.0
    assert y.bincount(minlength=10).tolist() == [5] * 10


@pytest.mark.skipif(
    not data.fashion_mnist_available(), reason="Debian's dataset-fashion-mnist not installed"
)
def test_real_fashion_mnist_from_debian_package():
    x, y = data.load("fashion-mnist", 100, size=14, seed=0)
    assert x.shape == (100, 196) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert y.bincount(minlength=10).tolist() == [10] * 10


def test_bad_arguments_are_refused_before_reading(tmp_path):
    with pytest.raises(ValueError, match="name='svhn'.*'fashion-mnist'"):
        data.load("svhn", 10, root=tmp_path)
    with pytest.raises(ValueError, match="size=5 must divide the image side 8"):
        data.load("digits", 10, size=5)
    with pytest.raises(ValueError, match="n=0"):
        data.load("digits", 0)


def test_offline_switch_turns_downloads_off(tmp_path, monkeypatch):
    from torchvision import datasets

    def no_network(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(datasets.MNIST, "download", no_network)
    monkeypatch.setenv("HESSNOISE_OFFLINE", "1")
    assert data.offline()
    with pytest.raises(data.DataMissing, match="mnist not found"):
        data.load("mnist", 10, root=tmp_path, download=True)
    monkeypatch.setenv("HESSNOISE_OFFLINE", "0")
    assert not data.offline()
