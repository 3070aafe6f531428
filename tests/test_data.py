"""tavaal.data: registry, offline datasets, on-disk format, imbalance mechanism, tensors."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_digits

from tavaal.data import (
    FORMAT_VERSION,
    DatasetInfo,
    PreparedDataset,
    class_count_entropy,
    known_input_shape,
    known_split_sizes,
    list_datasets,
    list_raw_sources,
    load_dataset,
    prepare_dataset,
    ratio_counts,
    raw_source,
    register_dataset,
    storage,
    subsample_per_class,
    to_tensor_batch,
    with_normalization,
)
from tavaal.data.registry import fixed_seed
from tavaal.data.synthetic import DIGITS_TEST_FRACTION, stratified_split
from tavaal.data.torchvision_sets import CIFAR10_ENTROPY_COUNTS, CIFAR10_IMBALANCE_RATIOS
from tavaal.errors import ConfigError, DatasetError

FILES = ("x_train.npy", "y_train.npy", "x_test.npy", "y_test.npy", "meta.json")


@pytest.fixture(scope="module")
def shared_dir(tmp_path_factory) -> Path:
    """One prepared copy of the offline datasets for the read-only tests."""
    root = tmp_path_factory.mktemp("data")
    for name in ("moons", "digits", "digits_imb10"):
        prepare_dataset(name, root)
    return root


def _half_up(value: float) -> int:
    return math.floor(value + 0.5)


def test_registry_names():
    # Built-in datasets only: other tests declare image folders in this process.
    assert list_datasets(image_folders=False) == sorted(
        [
            "moons",
            "digits",
            "digits_imb10",
            "cifar10",
            "cifar100",
            "svhn",
            "fashion_mnist",
            "cifar10_imb10",
            "cifar10_imb100",
            "cifar10_ent165",
            "cifar10_ent189",
            "cifar10_ent211",
            "caltech101",
            "caltech256",
            "imagenet",
            "cityscapes",
            "bdd100k_seg",
            "seg_shapes",
        ]
    )


def test_unknown_dataset_names_the_known_ones(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset 'mnist'.*moons"):
        prepare_dataset("mnist", tmp_path)
    with pytest.raises(DatasetError, match="unknown dataset 'mnist'"):
        load_dataset("mnist", tmp_path)


def test_known_split_sizes_equal_the_prepared_offline_datasets(shared_dir):
    for name in ("moons", "digits", "digits_imb10"):
        info = load_dataset(name, shared_dir).info
        assert known_split_sizes(name) == (info.n_train, info.n_test), name
        assert known_input_shape(name) == info.input_shape, name


def test_known_input_shapes_of_the_torchvision_datasets():
    # The builders check the raw files against these shapes (_checked in torchvision_sets).
    assert all(known_input_shape(n) == (3, 32, 32) for n in list_datasets() if "cifar" in n)
    assert known_input_shape("svhn") == (3, 32, 32)
    assert known_input_shape("fashion_mnist") == (1, 28, 28)
    assert all(known_input_shape(name) is not None for name in list_datasets())


def test_known_split_sizes_of_the_torchvision_datasets():
    # Published sizes of the raw sources.
    assert known_split_sizes("cifar10") == (50_000, 10_000)
    assert known_split_sizes("cifar100") == (50_000, 10_000)
    assert known_split_sizes("svhn") == (73_257, 26_032)
    assert known_split_sizes("fashion_mnist") == (60_000, 10_000)
    # CIFAR-10 has 5,000 train images per class; the variants keep the counts the builders ask
    # for (never more than there are), the test split is untouched.
    cifar10_labels = np.repeat(np.arange(10), 5000)
    for name, ratio in CIFAR10_IMBALANCE_RATIOS.items():
        reduced = ratio_counts(cifar10_labels, range(5), 1 / ratio)
        keep = subsample_per_class(cifar10_labels, reduced, seed=0)
        assert known_split_sizes(name) == (keep.size, 10_000), name
    for name, counts in CIFAR10_ENTROPY_COUNTS.items():
        keep = subsample_per_class(cifar10_labels, dict(enumerate(counts)), seed=0)
        assert known_split_sizes(name) == (keep.size, 10_000), name
    assert all(known_split_sizes(name) is not None for name in list_datasets())
    with pytest.raises(DatasetError, match="unknown dataset 'mnist'"):
        known_split_sizes("mnist")


def test_raw_sources_of_the_registered_datasets():
    assert list_raw_sources() == [
        "bdd100k",
        "caltech101",
        "caltech256",
        "cifar10",
        "cifar100",
        "cityscapes",
        "fashion_mnist",
        "imagenet",
        "svhn",
    ]
    assert raw_source("cifar10_ent189") == "cifar10" and raw_source("svhn") == "svhn"
    assert raw_source("digits_imb10") is None and raw_source("moons") is None


def test_register_dataset_needs_both_split_sizes():
    with pytest.raises(ValueError, match="both n_train and n_test"):
        register_dataset("half_declared", n_train=10)
    with pytest.raises(ValueError, match="positive"):
        register_dataset("empty", n_train=0, n_test=5)


def test_import_loads_no_heavy_libraries():
    code = (
        "import sys, tavaal.data; "
        "heavy = {'torch', 'torchvision', 'sklearn'}; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_moons_counts_shapes_and_info(shared_dir):
    ds = load_dataset("moons", shared_dir)
    assert isinstance(ds, PreparedDataset)
    assert ds.x_train.dtype == np.float32 and ds.x_train.shape == (550, 2)
    assert ds.x_test.dtype == np.float32 and ds.x_test.shape == (550, 2)
    assert ds.y_train.dtype == np.int64 and ds.y_test.dtype == np.int64
    # TA-VAAL §4.1: 500 points of one class, 50 of the other, for train and test alike.
    assert np.bincount(ds.y_train).tolist() == [500, 50]
    assert np.bincount(ds.y_test).tolist() == [500, 50]
    assert not np.array_equal(ds.x_train, ds.x_test)
    x = np.asarray(ds.x_train, dtype=np.float64)
    assert ds.info == DatasetInfo(
        name="moons",
        kind="vector",
        num_classes=2,
        classes=("0", "1"),
        input_shape=(2,),
        mean=tuple(x.mean(axis=0).tolist()),
        std=tuple(x.std(axis=0).tolist()),
        n_train=550,
        n_test=550,
    )
    # make_moons: class 0 is the upper arc, class 1 the lower one.
    assert ds.x_train[ds.y_train == 0, 1].mean() > ds.x_train[ds.y_train == 1, 1].mean()


def _digits_reference():
    bunch = load_digits()
    images = (bunch.images.astype(np.int64) * 255 // 16).astype(np.uint8)[..., None]
    return images, bunch.target.astype(np.int64)


def test_digits_values_split_and_counts(shared_dir):
    ds = load_dataset("digits", shared_dir)
    images, labels = _digits_reference()
    full = np.bincount(labels)
    expected_test = np.array([_half_up(n * DIGITS_TEST_FRACTION) for n in full])
    assert np.bincount(ds.y_test).tolist() == expected_test.tolist()
    assert np.bincount(ds.y_train).tolist() == (full - expected_test).tolist()
    assert ds.x_train.dtype == np.uint8 and ds.x_train.shape == (ds.info.n_train, 8, 8, 1)
    assert ds.info.input_shape == (1, 8, 8) and ds.info.kind == "image"
    # 0..16 scaled by floor(v * 255 / 16): exactly these 17 grey levels, 16 -> 255.
    levels = {v * 255 // 16 for v in range(17)}
    assert set(np.unique(ds.x_train).tolist()) <= levels
    assert ds.x_train.max() == 255
    train, test = stratified_split(labels, DIGITS_TEST_FRACTION, fixed_seed("digits/split"))
    assert np.array_equal(ds.x_train, images[train]) and np.array_equal(ds.y_train, labels[train])
    assert np.array_equal(ds.x_test, images[test]) and np.array_equal(ds.y_test, labels[test])
    assert not set(train.tolist()) & set(test.tolist())
    assert len(train) + len(test) == len(labels)
    x = np.asarray(ds.x_train, dtype=np.float64) / 255
    assert ds.info.mean == pytest.approx((x.mean(),), rel=1e-12)
    assert ds.info.std == pytest.approx((x.std(),), rel=1e-12)


def test_digits_imb10_reduces_first_five_train_classes_only(shared_dir):
    base = load_dataset("digits", shared_dir)
    imb = load_dataset("digits_imb10", shared_dir)
    base_counts = np.bincount(base.y_train)
    expected = [max(1, _half_up(n / 10)) if c < 5 else int(n) for c, n in enumerate(base_counts)]
    assert np.bincount(imb.y_train).tolist() == expected
    # The test split is untouched (balanced, identical bytes).
    assert np.array_equal(imb.x_test, base.x_test) and np.array_equal(imb.y_test, base.y_test)
    # Every kept train sample is a train sample of `digits` with the same label.
    flat = {(bytes(x), int(y)) for x, y in zip(base.x_train, base.y_train, strict=True)}
    assert all((bytes(x), int(y)) in flat for x, y in zip(imb.x_train, imb.y_train, strict=True))
    assert imb.info.n_train == sum(expected) and imb.info.classes == base.info.classes


@pytest.mark.parametrize("name", ["moons", "digits", "digits_imb10"])
def test_prepare_is_deterministic(tmp_path, name):
    first = prepare_dataset(name, tmp_path / "a")
    second = prepare_dataset(name, tmp_path / "b")
    assert first == tmp_path / "a" / name
    for file in FILES:
        assert (first / file).read_bytes() == (second / file).read_bytes(), file


def test_prepare_is_idempotent_and_leaves_no_temporary_folder(tmp_path):
    folder = prepare_dataset("moons", tmp_path)
    stamps = {f: (folder / f).stat().st_mtime_ns for f in FILES}
    assert prepare_dataset("moons", tmp_path) == folder
    assert {f: (folder / f).stat().st_mtime_ns for f in FILES} == stamps
    assert sorted(p.name for p in tmp_path.iterdir()) == ["moons"]
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["format_version"] == FORMAT_VERSION and meta["name"] == "moons"


def test_load_prepares_when_missing_and_memory_maps(tmp_path):
    ds = load_dataset("digits", tmp_path)
    assert (tmp_path / "digits" / "meta.json").is_file()
    for array in (ds.x_train, ds.y_train, ds.x_test, ds.y_test):
        assert isinstance(array, np.memmap) and array.mode == "r"
        assert not array.flags.writeable
    again = load_dataset("digits", tmp_path)
    assert again.info == ds.info and np.array_equal(again.x_train, ds.x_train)


def test_killed_preparation_leaves_nothing(tmp_path, monkeypatch):
    calls = []
    real_write = storage._write_array

    def failing_write(path, array):
        calls.append(path.name)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the job is stopped halfway through writing
        real_write(path, array)

    monkeypatch.setattr(storage, "_write_array", failing_write)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset("moons", tmp_path)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(storage, "_write_array", real_write)
    assert load_dataset("moons", tmp_path).info.n_train == 550


def test_concurrent_preparation_keeps_the_winner(tmp_path, monkeypatch):
    winner = prepare_dataset("moons", tmp_path / "other") / "meta.json"

    def lose_race(src, dst):
        shutil.copytree(winner.parent, dst)  # another job renamed its folder first
        raise OSError(39, "Directory not empty")

    monkeypatch.setattr(storage.os, "rename", lose_race)
    folder = prepare_dataset("moons", tmp_path / "data")
    assert sorted(p.name for p in folder.parent.iterdir()) == ["moons"]
    assert (folder / "meta.json").read_bytes() == winner.read_bytes()


@pytest.fixture
def prepared(tmp_path, shared_dir) -> Path:
    shutil.copytree(shared_dir / "digits", tmp_path / "digits")
    return tmp_path


@pytest.mark.parametrize("loader", [load_dataset, prepare_dataset])
def test_corrupt_meta_is_reported_with_its_path(prepared, loader):
    meta = prepared / "digits" / "meta.json"
    meta.write_text("{not json")
    with pytest.raises(DatasetError, match=r"digits/meta\.json: not valid JSON"):
        loader("digits", prepared)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.pop("std"), "std: required key is missing"),
        (lambda m: m.update(format_version=0), "format_version 0"),
        (lambda m: m.update(n_train="1258"), "n_train: expected an integer, got '1258'"),
        (lambda m: m.update(kind="text"), "kind: 'text' is not one of image, vector"),
        (lambda m: m.update(mean=["0.5"]), r"meta\.json: mean\[0\]: expected a number, got '0\.5'"),
        (lambda m: m.update(name="moons"), "does not match the folder"),
        (lambda m: m.update(n_train=10), r"x_train\.npy: holds uint8"),
    ],
)
def test_invalid_meta_contents(prepared, edit, message):
    path = prepared / "digits" / "meta.json"
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=message):
        load_dataset("digits", prepared)


def test_missing_meta_means_not_prepared(prepared):
    (prepared / "digits" / "meta.json").unlink()
    with pytest.raises(DatasetError, match=r"digits/meta\.json: missing"):
        load_dataset("digits", prepared)


@pytest.mark.parametrize("keep_bytes", [0, 60, 1000])
def test_truncated_array_is_reported_with_its_path(prepared, keep_bytes):
    path = prepared / "digits" / "x_train.npy"
    data = path.read_bytes()
    path.write_bytes(data[:keep_bytes])
    with pytest.raises(DatasetError, match=r"digits/x_train\.npy: not a readable \.npy file"):
        load_dataset("digits", prepared)


def test_missing_or_mistyped_array(prepared):
    folder = prepared / "digits"
    labels = np.load(folder / "y_test.npy")
    np.save(folder / "y_test.npy", labels.astype(np.int32))
    with pytest.raises(DatasetError, match=r"y_test\.npy: holds int32"):
        load_dataset("digits", prepared)
    (folder / "y_test.npy").unlink()
    with pytest.raises(DatasetError, match=r"y_test\.npy: missing"):
        load_dataset("digits", prepared)


def test_pickled_array_is_refused(prepared):
    path = prepared / "digits" / "y_train.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DatasetError, match=r"y_train\.npy"):
        load_dataset("digits", prepared)


def test_to_tensor_batch_images_by_hand(shared_dir):
    ds = load_dataset("digits", shared_dir)
    mean, std = ds.info.mean[0], ds.info.std[0]
    batch = to_tensor_batch(torch.from_numpy(np.array(ds.x_train[:5])), ds.info)
    assert batch.dtype == torch.float32 and batch.shape == (5, 1, 8, 8)
    assert batch.is_contiguous()
    for n, h, w in [(0, 0, 0), (1, 3, 4), (4, 7, 2), (2, 5, 5)]:
        expected = (int(ds.x_train[n, h, w, 0]) / 255 - mean) / std
        assert batch[n, 0, h, w].item() == pytest.approx(expected, abs=1e-6)
    # A read-only memory-mapped slice is accepted as it is.
    assert torch.equal(to_tensor_batch(ds.x_train[:5], ds.info), batch)


def test_to_tensor_batch_channel_order():
    info = DatasetInfo(
        "rgb", "image", 2, ("a", "b"), (3, 2, 2), (0.1, 0.5, 0.9), (0.5, 0.25, 2.0), 1, 1
    )
    x = torch.zeros(1, 2, 2, 3, dtype=torch.uint8)
    x[0, 1, 0] = torch.tensor([255, 51, 0], dtype=torch.uint8)  # pixel (h=1, w=0), channels RGB
    out = to_tensor_batch(x, info)
    assert out.shape == (1, 3, 2, 2)
    assert out[0, :, 1, 0].tolist() == pytest.approx([(1 - 0.1) / 0.5, (0.2 - 0.5) / 0.25, -0.45])
    assert out[0, :, 0, 0].tolist() == pytest.approx([-0.2, -2.0, -0.45])


def test_to_tensor_batch_vectors_and_errors(shared_dir):
    ds = load_dataset("moons", shared_dir)
    x = torch.from_numpy(np.array(ds.x_train[:4]))
    out = to_tensor_batch(x, ds.info)
    mean, std = np.array(ds.info.mean), np.array(ds.info.std)
    expected = (np.array(ds.x_train[:4], dtype=np.float64) - mean) / std
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert out.dtype == torch.float32 and torch.equal(x, torch.from_numpy(ds.x_train[:4].copy()))
    with pytest.raises(ValueError, match="expected float vectors"):
        to_tensor_batch(torch.zeros(4, 3), ds.info)
    digits = load_dataset("digits", shared_dir)
    with pytest.raises(ValueError, match="expected uint8 images"):
        to_tensor_batch(torch.zeros(2, 8, 8, 1), digits.info)


@st.composite
def labels_and_counts(draw):
    num_classes = draw(st.integers(1, 6))
    labels = np.array(draw(st.lists(st.integers(0, num_classes - 1), min_size=1, max_size=80)))
    chosen = draw(st.lists(st.integers(0, num_classes - 1), unique=True))
    counts = {c: draw(st.integers(0, 30)) for c in chosen}
    return labels, counts, draw(st.integers(0, 2**32))


@settings(max_examples=150, deadline=None)
@given(labels_and_counts())
def test_subsample_keeps_min_of_requested_and_available(case):
    labels, counts, seed = case
    keep = subsample_per_class(labels, counts, seed)
    assert keep.dtype == np.int64
    assert np.array_equal(keep, np.unique(keep))  # sorted, no repeats
    for cls in np.unique(labels):
        available = int(np.count_nonzero(labels == cls))
        want = min(counts[int(cls)], available) if int(cls) in counts else available
        assert int(np.count_nonzero(labels[keep] == cls)) == want
    assert np.array_equal(subsample_per_class(labels, counts, seed), keep)  # fixed seed
    # Smaller requests keep subsets of larger ones (nested variants).
    smaller = {c: n // 2 for c, n in counts.items()}
    assert set(subsample_per_class(labels, smaller, seed).tolist()) <= set(keep.tolist())


def test_subsample_rejects_negative_counts():
    with pytest.raises(ValueError, match="class 1: negative"):
        subsample_per_class(np.array([0, 1]), {1: -1}, 0)


def test_ratio_counts_round_half_up_and_keep_one():
    labels = np.repeat(np.arange(4), [5000, 125, 4, 7])
    assert ratio_counts(labels, range(4), 0.1) == {0: 500, 1: 13, 2: 1, 3: 1}
    assert ratio_counts(labels, [0], 0.01) == {0: 50}
    with pytest.raises(ValueError):
        ratio_counts(labels, [0], 0.0)


@pytest.mark.parametrize(
    ("name", "paper_entropy", "total"),
    [
        ("cifar10_ent165", 1.65, 16550),
        ("cifar10_ent189", 1.89, 19000),
        ("cifar10_ent211", 2.11, 23000),
    ],
)
def test_table1_class_count_entropies(name, paper_entropy, total):
    counts = CIFAR10_ENTROPY_COUNTS[name]
    assert sum(counts) == total  # TA-VAAL arXiv Table 1, last column
    assert counts[:4] == (3000, 3000, 4000, 5000)
    entropy = class_count_entropy(counts)
    # Natural log; the paper truncates to two decimals (1.6570, 1.8998, 2.1146). Base 2 or 10
    # gives 2.39/2.74/3.05 and 0.72/0.83/0.92, and rounding would give 1.66 and 1.90.
    assert math.floor(entropy * 100) / 100 == pytest.approx(paper_entropy)
    assert abs(entropy - paper_entropy) < 0.01


def test_class_count_entropy_values():
    assert class_count_entropy([10, 10]) == pytest.approx(math.log(2))
    assert class_count_entropy([5, 0, 0]) == 0.0
    assert class_count_entropy([0, 0]) == 0.0


def test_load_needs_no_write_access(shared_dir):
    # Prepared files are plain .npy; loading never needs write access to the folder.
    folder = shared_dir / "moons"
    modes = {f: os.stat(folder / f).st_mode for f in FILES}
    try:
        for f in FILES:
            os.chmod(folder / f, 0o444)
        assert load_dataset("moons", shared_dir).info.n_test == 550
    finally:
        for f, mode in modes.items():
            os.chmod(folder / f, mode)


def test_half_normalisation_maps_pixels_to_minus_one_one(shared_dir):
    digits = load_dataset("digits", shared_dir)
    assert with_normalization(digits, "dataset") is digits
    half = with_normalization(digits, "half")
    assert half.info.mean == (0.5,) and half.info.std == (0.5,)
    assert half.x_train is digits.x_train  # the same arrays, only the scaling differs
    pixels = np.array([[[[0]], [[255]]]], dtype=np.uint8).reshape(1, 1, 2, 1)
    info = dataclasses.replace(half.info, input_shape=(1, 1, 2))
    np.testing.assert_allclose(to_tensor_batch(pixels, info).numpy().ravel(), [-1.0, 1.0])
    with pytest.raises(ConfigError, match="'half' is for images"):
        with_normalization(load_dataset("moons", shared_dir), "half")
    with pytest.raises(ConfigError, match="unknown mode 'unit'"):
        with_normalization(digits, "unit")


def test_a_preparation_removes_the_staging_folders_of_killed_jobs(tmp_path):
    """A prepare job killed mid-way leaves a hidden staging folder; the next preparation removes
    those of this host's dead processes and keeps those of live ones and of other hosts."""
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(dead.stdout)
    host = socket.gethostname()
    stale = tmp_path / f".moons.tmp-{host}-{dead_pid}-abcd1234"
    live = tmp_path / f".moons.tmp-{host}-{os.getpid()}-abcd1234"
    other_host = tmp_path / f".moons.tmp-{host}x-{dead_pid}-abcd1234"
    other_dataset = tmp_path / f".digits.tmp-{host}-{dead_pid}-abcd1234"
    for folder in (stale, live, other_host, other_dataset):
        folder.mkdir()
        (folder / "x_train.npy").write_bytes(b"partial")
    lines = []
    prepare_dataset("moons", tmp_path, log=lines.append)
    assert not stale.exists()
    assert live.exists() and other_host.exists() and other_dataset.exists()
    assert any(str(stale) in line and str(dead_pid) in line for line in lines)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".moons.tmp-")) == sorted(
        [live.name, other_host.name]
    )
