"""Tiny raw files in the exact on-disk formats of the torchvision sources, for the tests.

Each writer puts a few random images where torchvision keeps them under a raw root
(``<raw_root>/<source>/...``) and returns what it wrote; `trust_checksums` lets torchvision accept
them. Used by test_torchvision_formats.py and test_local_sources.py.
"""

from __future__ import annotations

import gzip
import hashlib
import pickle
import struct
from pathlib import Path

import numpy as np
import scipy.io
from torchvision import datasets

CIFAR10_NAMES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def file_md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _pickle(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        pickle.dump(obj, handle, protocol=2)


def _images(rng: np.random.Generator, n: int, shape=(3072,)) -> np.ndarray:
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)


def trust_checksums(monkeypatch, dataset_cls, folder: Path) -> None:
    """Point torchvision's md5 lists at our tiny files.

    torchvision compares every CIFAR/SVHN file with the md5 of the real download
    (`_check_integrity` -> `check_integrity(path, md5)`), which no tiny file can match. Only the
    expected sums are replaced, with the sums of the files written here; the integrity check
    itself and all parsing stay torchvision's own.
    """
    if dataset_cls is datasets.SVHN:
        patched = {
            split: [url, name, file_md5(folder / name) if (folder / name).exists() else md5]
            for split, (url, name, md5) in dataset_cls.split_list.items()
        }
        monkeypatch.setattr(dataset_cls, "split_list", patched)
        return
    base = folder / dataset_cls.base_folder
    for attr in ("train_list", "test_list"):
        entries = [[name, file_md5(base / name)] for name, _ in getattr(dataset_cls, attr)]
        monkeypatch.setattr(dataset_cls, attr, entries)
    meta = dict(dataset_cls.meta, md5=file_md5(base / dataset_cls.meta["filename"]))
    monkeypatch.setattr(dataset_cls, "meta", meta)


def write_cifar10(raw_root: Path, per_class_train: int = 20, per_class_test: int = 10):
    """CIFAR-10 python version: five train batches, a test batch, batches.meta.

    Rows are 3072 bytes: the 1024 red values (row-major 32x32), then green, then blue.
    """
    rng = np.random.default_rng(10)
    base = raw_root / "cifar10" / "cifar-10-batches-py"
    train_labels = rng.permutation(np.repeat(np.arange(10), per_class_train))
    train_data = _images(rng, train_labels.size)
    for i, (data, labels) in enumerate(
        zip(np.array_split(train_data, 5), np.array_split(train_labels, 5), strict=True), 1
    ):
        _pickle(
            base / f"data_batch_{i}",
            {
                "batch_label": f"training batch {i} of 5",
                "labels": labels.tolist(),
                "data": data,
                "filenames": [f"img_{i}_{j}.png" for j in range(len(labels))],
            },
        )
    test_labels = rng.permutation(np.repeat(np.arange(10), per_class_test))
    test_data = _images(rng, test_labels.size)
    _pickle(
        base / "test_batch",
        {
            "batch_label": "testing batch 1 of 1",
            "labels": test_labels.tolist(),
            "data": test_data,
            "filenames": [f"test_{j}.png" for j in range(test_labels.size)],
        },
    )
    _pickle(
        base / "batches.meta",
        {"num_cases_per_batch": 10000, "label_names": CIFAR10_NAMES, "num_vis": 3072},
    )
    return train_data, train_labels, test_data, test_labels


def write_cifar100(raw_root: Path):
    """Tiny CIFAR-100 files; every fine class is in the train file, and its super-class (coarse
    label) is a shuffled assignment of five classes each, returned as `splits["groups"]`."""
    rng = np.random.default_rng(100)
    base = raw_root / "cifar100" / "cifar-100-python"
    groups = rng.permutation(100) // 5
    splits = {"groups": groups}
    for split, n in (("train", 300), ("test", 120)):
        fine = rng.integers(0, 100, size=n)
        if split == "train":
            fine[:100] = rng.permutation(100)
        data = _images(rng, n)
        _pickle(
            base / split,
            {
                "filenames": [f"{split}_{j}.png" for j in range(n)],
                "batch_label": f"{split} batch",
                "fine_labels": fine.tolist(),
                "coarse_labels": groups[fine].tolist(),
                "data": data,
            },
        )
        splits[split] = (data, fine)
    names = [f"fine_{k:02d}" for k in range(100)]
    _pickle(
        base / "meta",
        {"fine_label_names": names, "coarse_label_names": [f"coarse_{k}" for k in range(20)]},
    )
    return splits, names


def write_svhn(raw_root: Path):
    """SVHN cropped digits: X is (32, 32, 3, N) uint8, y is (N, 1) with 10 for the digit 0."""
    rng = np.random.default_rng(7)
    folder = raw_root / "svhn"
    folder.mkdir(parents=True)
    out = {}
    for split, n in (("train", 25), ("test", 12)):
        x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
        y = rng.integers(1, 11, size=(n, 1)).astype(np.uint8)
        y[:2, 0] = (10, 3)  # at least one zero digit and one other
        scipy.io.savemat(folder / f"{split}_32x32.mat", {"X": x, "y": y})
        out[split] = (x, y)
    return out


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX format: 0x0000, type 0x08 (ubyte), ndim, big-endian int32 sizes, then the bytes."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_fashion_mnist(raw_root: Path, compressed: bool):
    rng = np.random.default_rng(28)
    folder = raw_root / "fashion_mnist" / "FashionMNIST" / "raw"
    folder.mkdir(parents=True)
    out = {}
    for prefix, n in (("train", 30), ("t10k", 11)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        for name, array in (
            (f"{prefix}-images-idx3-ubyte", images),
            (f"{prefix}-labels-idx1-ubyte", labels),
        ):
            if compressed:  # what the download leaves before extraction
                (folder / f"{name}.gz").write_bytes(gzip.compress(idx_bytes(array), mtime=0))
            else:
                (folder / name).write_bytes(idx_bytes(array))
        out[prefix] = (images, labels)
    return out
