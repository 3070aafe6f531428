"""The torchvision datasets, read from tiny files written in the exact on-disk formats.

No network: each test writes a few images in the format torchvision reads (CIFAR python pickles,
SVHN .mat files, Fashion-MNIST idx files) under ``data_dir/raw/<source>/`` and prepares the
dataset through the real code path (`prepare_dataset` -> torchvision's dataset classes).
"""

from __future__ import annotations

import gzip
import hashlib
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from torchvision import datasets

from tavaal.data import load_dataset, prepare_dataset
from tavaal.errors import DatasetError

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer",
                 "dog", "frog", "horse", "ship", "truck"]


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _pickle(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        pickle.dump(obj, handle, protocol=2)


def _images(rng: np.random.Generator, n: int, shape=(3072,)) -> np.ndarray:
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)


def _trust_checksums(monkeypatch, dataset_cls, folder: Path) -> None:
    """Point torchvision's md5 lists at our tiny files.

    torchvision compares every CIFAR/SVHN file with the md5 of the real download
    (`_check_integrity` -> `check_integrity(path, md5)`), which no tiny file can match. Only the
    expected sums are replaced, with the sums of the files written here; the integrity check
    itself and all parsing stay torchvision's own.
    """
    if dataset_cls is datasets.SVHN:
        patched = {
            split: [url, name, _md5(folder / name) if (folder / name).exists() else md5]
            for split, (url, name, md5) in dataset_cls.split_list.items()
        }
        monkeypatch.setattr(dataset_cls, "split_list", patched)
        return
    base = folder / dataset_cls.base_folder
    for attr in ("train_list", "test_list"):
        entries = [[name, _md5(base / name)] for name, _ in getattr(dataset_cls, attr)]
        monkeypatch.setattr(dataset_cls, attr, entries)
    meta = dict(dataset_cls.meta, md5=_md5(base / dataset_cls.meta["filename"]))
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
    rng = np.random.default_rng(100)
    base = raw_root / "cifar100" / "cifar-100-python"
    splits = {}
    for split, n in (("train", 300), ("test", 120)):
        fine = rng.integers(0, 100, size=n)
        data = _images(rng, n)
        _pickle(
            base / split,
            {
                "filenames": [f"{split}_{j}.png" for j in range(n)],
                "batch_label": f"{split} batch",
                "fine_labels": fine.tolist(),
                "coarse_labels": (fine // 5).tolist(),
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


def _idx(array: np.ndarray) -> bytes:
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
        for name, array in ((f"{prefix}-images-idx3-ubyte", images),
                            (f"{prefix}-labels-idx1-ubyte", labels)):
            if compressed:  # what the download leaves before extraction
                (folder / f"{name}.gz").write_bytes(gzip.compress(_idx(array), mtime=0))
            else:
                (folder / name).write_bytes(_idx(array))
        out[prefix] = (images, labels)
    return out


def test_cifar10_pixels_labels_and_nhwc(tmp_path, monkeypatch):
    train_data, train_labels, test_data, test_labels = write_cifar10(tmp_path / "raw")
    _trust_checksums(monkeypatch, datasets.CIFAR10, tmp_path / "raw" / "cifar10")
    assert prepare_dataset("cifar10", tmp_path) == tmp_path / "cifar10"
    ds = load_dataset("cifar10", tmp_path)
    assert ds.x_train.dtype == np.uint8 and ds.x_train.shape == (200, 32, 32, 3)
    assert ds.x_test.shape == (100, 32, 32, 3)
    assert ds.y_train.tolist() == train_labels.tolist()  # batches 1..5 in order
    assert ds.y_test.tolist() == test_labels.tolist()
    # Pixel (n, h, w, c) is byte c*1024 + h*32 + w of row n.
    for n, h, w, c in [(0, 0, 0, 0), (3, 5, 7, 1), (57, 31, 0, 2), (199, 16, 30, 2)]:
        assert ds.x_train[n, h, w, c] == train_data[n, c * 1024 + h * 32 + w]
    assert np.array_equal(ds.x_test[12, :, :, 1], test_data[12, 1024:2048].reshape(32, 32))
    info = ds.info
    assert info.classes == tuple(CIFAR10_NAMES) and info.num_classes == 10
    assert info.input_shape == (3, 32, 32) and info.kind == "image"
    planes = train_data.reshape(-1, 3, 1024).astype(np.float64) / 255
    assert info.mean == pytest.approx(tuple(planes.mean(axis=(0, 2))), rel=1e-12)
    assert info.std == pytest.approx(tuple(planes.transpose(1, 0, 2).reshape(3, -1).std(1)))


def test_cifar100_fine_labels(tmp_path, monkeypatch):
    splits, names = write_cifar100(tmp_path / "raw")
    _trust_checksums(monkeypatch, datasets.CIFAR100, tmp_path / "raw" / "cifar100")
    ds = load_dataset("cifar100", tmp_path)
    data, fine = splits["train"]
    assert ds.y_train.tolist() == fine.tolist()
    assert ds.y_test.tolist() == splits["test"][1].tolist()
    assert ds.info.num_classes == 100 and ds.info.classes == tuple(names)
    assert np.array_equal(ds.x_train[9, 2, :, 0], data[9, 64:96])
    assert np.array_equal(ds.x_test, splits["test"][0].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def test_imbalanced_cifar10_variants(tmp_path, monkeypatch):
    _, train_labels, test_data, test_labels = write_cifar10(tmp_path / "raw")
    _trust_checksums(monkeypatch, datasets.CIFAR10, tmp_path / "raw" / "cifar10")
    full = load_dataset("cifar10", tmp_path)
    imb10 = load_dataset("cifar10_imb10", tmp_path)
    imb100 = load_dataset("cifar10_imb100", tmp_path)
    # First five classes (TA-VAAL CVPR §4.3) reduced: 20 -> 2 (x10), 20 -> 1 (x100, never 0).
    assert np.bincount(imb10.y_train).tolist() == [2] * 5 + [20] * 5
    assert np.bincount(imb100.y_train).tolist() == [1] * 5 + [20] * 5
    for ds in (imb10, imb100):
        assert np.array_equal(ds.x_test, full.x_test) and np.array_equal(ds.y_test, full.y_test)
        assert ds.info.n_test == 100

    def rows(ds):
        return {bytes(x) for x in ds.x_train}

    assert rows(imb100) <= rows(imb10) <= rows(full)  # nested: same per-class permutation
    # Every Table 1 count exceeds the tiny file's 20 images per class, so all are kept.
    ent = load_dataset("cifar10_ent165", tmp_path)
    assert np.array_equal(ent.y_train, full.y_train)


def test_svhn_maps_ten_to_zero_and_is_nhwc(tmp_path, monkeypatch):
    written = write_svhn(tmp_path / "raw")
    _trust_checksums(monkeypatch, datasets.SVHN, tmp_path / "raw" / "svhn")
    ds = load_dataset("svhn", tmp_path)
    for split in ("train", "test"):
        x_loaded, y_loaded = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
        x, y = written[split]
        assert x_loaded.shape == (x.shape[3], 32, 32, 3) and x_loaded.dtype == np.uint8
        assert y_loaded.tolist() == [0 if v == 10 else int(v) for v in y[:, 0]]
        # (h, w, c, n) in the .mat file is (n, h, w, c) here.
        assert np.array_equal(x_loaded, x.transpose(3, 0, 1, 2))
    assert ds.y_train[0] == 0 and ds.y_train[1] == 3
    assert ds.info.classes == tuple("0123456789") and ds.info.input_shape == (3, 32, 32)


@pytest.mark.parametrize("compressed", [False, True])
def test_fashion_mnist_idx_files(tmp_path, compressed):
    written = write_fashion_mnist(tmp_path / "raw", compressed)
    ds = load_dataset("fashion_mnist", tmp_path)
    images, labels = written["train"]
    assert ds.x_train.shape == (30, 28, 28, 1) and ds.x_train.dtype == np.uint8
    assert np.array_equal(ds.x_train[..., 0], images)
    assert ds.y_train.tolist() == labels.tolist()
    assert np.array_equal(ds.x_test[..., 0], written["t10k"][0])
    assert ds.y_test.tolist() == written["t10k"][1].tolist()
    assert ds.info.classes[0] == "T-shirt/top" and ds.info.input_shape == (1, 28, 28)


@pytest.mark.parametrize(
    ("name", "folder", "first_file"),
    [
        ("cifar10", "raw/cifar10", "cifar-10-batches-py/data_batch_1"),
        ("cifar10_ent189", "raw/cifar10", "cifar-10-batches-py/batches.meta"),
        ("cifar100", "raw/cifar100", "cifar-100-python/train"),
        ("svhn", "raw/svhn", "train_32x32.mat"),
        ("fashion_mnist", "raw/fashion_mnist", "FashionMNIST/raw/train-images-idx3-ubyte"),
    ],
)
def test_missing_raw_files_name_the_folder_and_the_fix(tmp_path, name, folder, first_file):
    with pytest.raises(DatasetError) as error:
        prepare_dataset(name, tmp_path)
    message = str(error.value)
    assert str(tmp_path / folder) in message and first_file in message
    assert f"tavaal prepare {name} --download" in message
    assert not (tmp_path / name).exists()


def test_partly_missing_lists_only_what_is_missing(tmp_path, monkeypatch):
    write_cifar10(tmp_path / "raw")
    (tmp_path / "raw" / "cifar10" / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DatasetError, match=r"missing: cifar-10-batches-py/data_batch_3\)"):
        prepare_dataset("cifar10", tmp_path)


def test_checksum_mismatch_becomes_dataset_error(tmp_path):
    # Without the patched md5 list, torchvision's own check rejects the files (RuntimeError).
    write_cifar10(tmp_path / "raw")
    with pytest.raises(DatasetError, match="not found or corrupted") as error:
        prepare_dataset("cifar10", tmp_path)
    assert str(tmp_path / "raw" / "cifar10") in str(error.value)
    assert isinstance(error.value.__cause__, RuntimeError)
    assert not (tmp_path / "cifar10").exists()


def test_damaged_idx_file_becomes_dataset_error(tmp_path):
    write_fashion_mnist(tmp_path / "raw", compressed=False)
    path = tmp_path / "raw" / "fashion_mnist" / "FashionMNIST" / "raw" / "train-labels-idx1-ubyte"
    path.write_bytes(b"\x00\x00\x0c\x01")  # int32 labels: torchvision refuses them
    with pytest.raises(DatasetError, match="could not read the raw files"):
        prepare_dataset("fashion_mnist", tmp_path)
