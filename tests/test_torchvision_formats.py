"""The torchvision datasets, read from tiny files written in the exact on-disk formats.

No network: each test writes a few images in the format torchvision reads (CIFAR python pickles,
SVHN .mat files, Fashion-MNIST idx files) under ``data_dir/raw/<source>/`` and prepares the
dataset through the real code path (`prepare_dataset` -> torchvision's dataset classes).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from raw_formats import (
    CIFAR10_NAMES,
    trust_checksums,
    write_cifar10,
    write_cifar100,
    write_fashion_mnist,
    write_svhn,
)
from torchvision import datasets

from tavaal.data import load_dataset, prepare_dataset
from tavaal.errors import DatasetError


def test_cifar10_pixels_labels_and_nhwc(tmp_path, monkeypatch):
    train_data, train_labels, test_data, test_labels = write_cifar10(tmp_path / "raw")
    trust_checksums(monkeypatch, datasets.CIFAR10, tmp_path / "raw" / "cifar10")
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


def test_cifar100_fine_labels_and_super_classes(tmp_path, monkeypatch):
    splits, names = write_cifar100(tmp_path / "raw")
    trust_checksums(monkeypatch, datasets.CIFAR100, tmp_path / "raw" / "cifar100")
    ds = load_dataset("cifar100", tmp_path)
    data, fine = splits["train"]
    assert ds.y_train.tolist() == fine.tolist()
    assert ds.y_test.tolist() == splits["test"][1].tolist()
    assert ds.info.num_classes == 100 and ds.info.classes == tuple(names)
    assert np.array_equal(ds.x_train[9, 2, :, 0], data[9, 64:96])
    assert np.array_equal(ds.x_test, splits["test"][0].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    # The super-class of each fine class, read from the coarse labels of the same file.
    assert ds.info.class_groups == tuple(splits["groups"].tolist())
    assert sorted(np.bincount(ds.info.class_groups).tolist()) == [5] * 20


def test_imbalanced_cifar10_variants(tmp_path, monkeypatch):
    _, train_labels, test_data, test_labels = write_cifar10(tmp_path / "raw")
    trust_checksums(monkeypatch, datasets.CIFAR10, tmp_path / "raw" / "cifar10")
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
    trust_checksums(monkeypatch, datasets.SVHN, tmp_path / "raw" / "svhn")
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


def test_meta_records_where_the_raw_files_came_from(tmp_path, monkeypatch):
    write_cifar10(tmp_path / "raw")
    trust_checksums(monkeypatch, datasets.CIFAR10, tmp_path / "raw" / "cifar10")
    write_fashion_mnist(tmp_path / "raw", compressed=False)
    for name in ("cifar10", "fashion_mnist"):
        prepare_dataset(name, tmp_path)
    cifar = json.loads((tmp_path / "cifar10" / "meta.json").read_text())
    assert cifar["source"] == str(tmp_path / "raw" / "cifar10" / "cifar-10-batches-py")
    assert cifar["raw_md5_verified"] is True  # torchvision checked every file's md5 sum
    fashion = json.loads((tmp_path / "fashion_mnist" / "meta.json").read_text())
    assert fashion["source"] == str(tmp_path / "raw" / "fashion_mnist" / "FashionMNIST" / "raw")
    assert fashion["raw_md5_verified"] is False  # it checks only what it downloads
    assert load_dataset("cifar10", tmp_path).info.n_train == 200  # the reader ignores both keys
