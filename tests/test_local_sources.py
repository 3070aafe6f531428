"""Raw files read in place from a folder the user already has (`--source DIR`, `raw_sources`).

The fast tests write tiny files in the true on-disk formats (tests/raw_formats.py), in each
accepted layout, prepare them in place (verified by `tavaal.data.raw_sources`, read by torchvision
through a temporary root) and compare the result with the download path's, torchvision reading
``data_dir/raw/<source>``. The md5 sums of the real files cannot match tiny ones, so `trust`
points `LAYOUTS` and torchvision's lists at the sums of the files written.

The last tests prepare the real Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package,
through the library, the CLI and the workflow's prepare_dataset rule. They skip when it is not
installed, unless TAVAAL_REQUIRE_FASHION_MNIST=1 (set by .ci/run, which installs it): then they
fail.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from raw_formats import (
    file_md5,
    idx_bytes,
    trust_checksums,
    write_cifar10,
    write_cifar100,
    write_fashion_mnist,
    write_svhn,
)
from torchvision import datasets

from tavaal.cli import main
from tavaal.data import known_split_sizes, load_dataset, open_prepared, prepare_dataset
from tavaal.data.raw_sources import LAYOUTS, RawFile
from tavaal.errors import DatasetError

REPO = Path(__file__).resolve().parents[1]
ARRAYS = ("x_train", "y_train", "x_test", "y_test")
TORCHVISION = {
    "cifar10": datasets.CIFAR10,
    "cifar100": datasets.CIFAR100,
    "svhn": datasets.SVHN,
    "fashion_mnist": datasets.FashionMNIST,
}


def write(source: str, raw_root: Path, compressed: bool = True) -> Path:
    """Tiny files of `source` in torchvision's layout under `raw_root`; returns the folder of
    the files themselves (``raw_root/<source>/<torchvision's subfolder>``)."""
    if source == "fashion_mnist":
        write_fashion_mnist(raw_root, compressed)
    else:
        {"cifar10": write_cifar10, "cifar100": write_cifar100, "svhn": write_svhn}[source](raw_root)
    return raw_root / source / LAYOUTS[source].subfolder


def trust(monkeypatch, source: str, folder: Path) -> None:
    """Make `LAYOUTS[source]` expect the md5 sums of the files now in `folder`, and torchvision,
    which checks the CIFAR and SVHN files again when it reads them, too."""
    files = []
    for spec in LAYOUTS[source].files:
        plain, packed = folder / spec.name, folder / f"{spec.name}.gz"
        if spec.gz_md5 is not None and packed.is_file():
            content = hashlib.md5(gzip.decompress(packed.read_bytes())).hexdigest()
            files.append(RawFile(spec.name, content, file_md5(packed)))
        elif plain.is_file():
            files.append(dataclasses.replace(spec, md5=file_md5(plain)))
        else:
            files.append(spec)
    monkeypatch.setitem(LAYOUTS, source, dataclasses.replace(LAYOUTS[source], files=tuple(files)))
    if source != "fashion_mnist":  # torchvision checks no md5 of the Fashion-MNIST files it finds
        root = folder.parent if LAYOUTS[source].subfolder else folder
        trust_checksums(monkeypatch, TORCHVISION[source], root)


def snapshot(folder: Path) -> dict[str, tuple[int, int, str]]:
    """Every entry under `folder`: size, modification time and md5 of each file."""
    entries = {}
    for path in sorted(folder.rglob("*")):
        stat = path.stat()
        digest = file_md5(path) if path.is_file() else "dir"
        entries[str(path.relative_to(folder))] = (stat.st_size, stat.st_mtime_ns, digest)
    return entries


def meta(data_dir: Path, name: str) -> dict:
    return json.loads((data_dir / name / "meta.json").read_text())


# ------------------------------------------------------- layouts: the arrays torchvision reads


@pytest.mark.parametrize(
    ("source", "layout", "compressed"),
    [
        ("cifar10", "torchvision", True),
        ("cifar10", "flat", True),
        ("cifar100", "torchvision", True),
        ("cifar100", "flat", True),
        ("svhn", "flat", True),  # torchvision's layout is the flat one
        ("fashion_mnist", "torchvision", True),
        ("fashion_mnist", "flat", True),  # Debian's: the four .gz files in DIR
        ("fashion_mnist", "torchvision", False),
        ("fashion_mnist", "flat", False),
    ],
)
def test_folder_gives_what_torchvision_reads(tmp_path, monkeypatch, source, layout, compressed):
    raw = tmp_path / "raw"
    files = write(source, raw, compressed)
    given = raw / source if layout == "torchvision" else files
    trust(monkeypatch, source, files)
    before = snapshot(given)
    local = load_dataset(source, tmp_path / "local", raw_sources={source: given})
    # Read in place: nothing written, extracted or copied into the folder or under data_dir/raw.
    assert snapshot(given) == before
    assert sorted(p.name for p in (tmp_path / "local").iterdir()) == [source]
    assert meta(tmp_path / "local", source)["source"] == str(files)
    assert meta(tmp_path / "local", source)["raw_md5_verified"] is True

    reference = load_dataset(source, tmp_path)  # the download path: torchvision reads raw/<source>
    for key in ARRAYS:
        assert np.array_equal(getattr(local, key), getattr(reference, key)), key
    assert local.info == reference.info


def test_derived_dataset_reads_its_source_folder(tmp_path, monkeypatch):
    files = write("cifar10", tmp_path / "raw")
    trust(monkeypatch, "cifar10", files)
    local = load_dataset("cifar10_imb10", tmp_path / "local", raw_sources={"cifar10": files})
    assert meta(tmp_path / "local", "cifar10_imb10")["source"] == str(files)
    reference = load_dataset("cifar10_imb10", tmp_path)
    for key in ARRAYS:
        assert np.array_equal(getattr(local, key), getattr(reference, key)), key
    assert np.bincount(local.y_train).tolist() == [2] * 5 + [20] * 5


def test_recompressed_gz_files_are_verified_by_their_contents(tmp_path, monkeypatch):
    # Debian's dataset-fashion-mnist recompresses the downloads: other .gz bytes, same contents.
    files = write("fashion_mnist", tmp_path / "raw")
    trust(monkeypatch, "fashion_mnist", files)
    for packed in files.glob("*.gz"):
        packed.write_bytes(gzip.compress(gzip.decompress(packed.read_bytes()), 1, mtime=1591347949))
        assert file_md5(packed) != next(
            spec.gz_md5 for spec in LAYOUTS["fashion_mnist"].files if packed.stem == spec.name
        )
    load_dataset("fashion_mnist", tmp_path / "local", raw_sources={"fashion_mnist": files})
    assert meta(tmp_path / "local", "fashion_mnist")["raw_md5_verified"] is True


def test_other_sources_in_the_mapping_are_ignored(tmp_path):
    prepare_dataset("moons", tmp_path, raw_sources={"cifar10": tmp_path / "nowhere"})
    # Generated datasets record no raw source; their meta.json is what it always was.
    assert "source" not in meta(tmp_path, "moons") and "raw_md5_verified" not in meta(
        tmp_path, "moons"
    )


# ------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("source", ["cifar10", "cifar100", "svhn", "fashion_mnist"])
def test_one_error_lists_every_missing_or_mismatching_file(tmp_path, source):
    # Not trusted: every tiny file differs from the real one torchvision knows.
    files = write(source, tmp_path / "raw")
    first, *others = LAYOUTS[source].files
    suffix = ".gz" if first.gz_md5 else ""
    (files / f"{first.name}{suffix}").unlink()
    with pytest.raises(DatasetError) as error:
        prepare_dataset(source, tmp_path / "local", raw_sources={source: files})
    message = str(error.value)
    assert f"dataset {source!r}" in message and f"in {files} " in message
    assert f"{first.name}{f' (or {first.name}.gz)' if suffix else ''} missing" in message
    for spec in others:
        expected = spec.gz_md5 or spec.md5
        assert f"{spec.name}{suffix} has md5 {file_md5(files / (spec.name + suffix))}" in message
        assert f"expected {expected}" in message
    assert message.count(" has md5 ") == len(others)
    assert not (tmp_path / "local" / source).exists()


def test_missing_and_damaged_files_are_named_with_what_was_expected(tmp_path, monkeypatch):
    files = write("cifar10", tmp_path / "raw")
    trust(monkeypatch, "cifar10", files)
    (files / "data_batch_3").unlink()
    with (files / "test_batch").open("ab") as handle:
        handle.write(b"\0")
    expected = next(spec.md5 for spec in LAYOUTS["cifar10"].files if spec.name == "test_batch")
    with pytest.raises(DatasetError) as error:
        prepare_dataset("cifar10", tmp_path / "local", raw_sources={"cifar10": files.parent})
    message = str(error.value)
    size = (files / "test_batch").stat().st_size
    assert f"(searched {files}, {files.parent})" in message
    assert message.endswith(
        f"data_batch_3 missing; test_batch has md5 {file_md5(files / 'test_batch')} "
        f"({size} bytes), expected {expected}"
    )


def test_empty_folder_lists_every_file_and_the_folders_searched(tmp_path):
    with pytest.raises(DatasetError) as error:
        prepare_dataset("fashion_mnist", tmp_path / "d", raw_sources={"fashion_mnist": tmp_path})
    message = str(error.value)
    assert f"(searched {tmp_path / 'FashionMNIST' / 'raw'}, {tmp_path})" in message
    for name in LAYOUTS["fashion_mnist"].names:
        assert f"{name} (or {name}.gz) missing" in message


def test_a_folder_that_is_not_there(tmp_path):
    (tmp_path / "file").write_text("")
    for path, problem in (
        (tmp_path / "nowhere", "does not exist"),
        (tmp_path / "file", "is not a folder"),
    ):
        with pytest.raises(DatasetError, match=f"the raw source 'svhn', {path}, {problem}"):
            prepare_dataset("svhn", tmp_path / "d", raw_sources={"svhn": path})


def test_damaged_gz_files(tmp_path, monkeypatch):
    files = write("fashion_mnist", tmp_path / "raw")
    trust(monkeypatch, "fashion_mnist", files)
    (files / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip")
    labels = files / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(idx_bytes(np.zeros(11, dtype=np.uint8))))
    with pytest.raises(DatasetError) as error:
        prepare_dataset("fashion_mnist", tmp_path / "d", raw_sources={"fashion_mnist": files})
    message = str(error.value)
    assert "train-images-idx3-ubyte.gz is not a readable gzip file" in message
    spec = next(s for s in LAYOUTS["fashion_mnist"].files if s.name == "t10k-labels-idx1-ubyte")
    assert (
        f"t10k-labels-idx1-ubyte.gz has md5 {file_md5(labels)}, expected {spec.gz_md5} "
        f"(or contents with md5 {spec.md5}, found "
    ) in message
    assert "train-labels" not in message and "t10k-images" not in message


def test_trusted_file_in_a_wrong_format_names_the_folder(tmp_path, monkeypatch):
    files = write("fashion_mnist", tmp_path / "raw", compressed=False)
    path = files / "train-labels-idx1-ubyte"
    path.write_bytes(b"\x00\x00\x0c\x01" + struct.pack(">I", 1) + b"\0\0\0\1")  # int32 labels
    trust(monkeypatch, "fashion_mnist", files)
    with pytest.raises(DatasetError) as error:
        prepare_dataset("fashion_mnist", tmp_path / "d", raw_sources={"fashion_mnist": files})
    # The folder the user gave, not the temporary root torchvision read it through.
    assert str(error.value) == (
        f"dataset 'fashion_mnist': could not read the raw files in {files}: x should be of dtype "
        f"torch.uint8 instead of torch.int32 (their md5 sums are the expected ones)"
    )
    assert not (tmp_path / "d" / "fashion_mnist").exists()


@pytest.mark.parametrize(
    ("source", "layout"), [("cifar100", "torchvision"), ("fashion_mnist", "flat")]
)
def test_a_read_only_folder_is_never_written(tmp_path, monkeypatch, source, layout):
    files = write(source, tmp_path / "raw")
    given = files.parent if layout == "torchvision" else files
    trust(monkeypatch, source, files)
    # torchvision reads a temporary root: it must be gone afterwards, whatever happened.
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    entries = [given, *given.rglob("*")]
    for path in entries:
        path.chmod(0o555 if path.is_dir() else 0o444)

    def state() -> tuple:
        # The folder's own modification time changes when anything is created in it and removed.
        return snapshot(given), [path.stat().st_mtime_ns for path in entries if path.is_dir()]

    before = state()
    try:
        prepare_dataset(source, tmp_path / "data", raw_sources={source: given})
        assert state() == before and list(scratch.iterdir()) == []
        recorded = meta(tmp_path / "data", source)
        assert recorded["source"] == str(files) and recorded["raw_md5_verified"] is True
        assert (
            open_prepared(source, tmp_path / "data").info.n_train
            == {
                "cifar100": 300,
                "fashion_mnist": 30,
            }[source]
        )

        # A damaged file (one byte more) is still named in the one error, with what was expected.
        spec = LAYOUTS[source].files[-1]
        damaged = files / f"{spec.name}{'.gz' if spec.gz_md5 else ''}"
        damaged.chmod(0o644)
        if spec.gz_md5:
            content = gzip.decompress(damaged.read_bytes()) + b"\0"
            damaged.write_bytes(gzip.compress(content, mtime=0))
            problem = (
                f"{damaged.name} has md5 {file_md5(damaged)}, expected {spec.gz_md5} (or "
                f"contents with md5 {spec.md5}, found {hashlib.md5(content).hexdigest()}, "
                f"{len(content)} bytes)"
            )
        else:
            damaged.write_bytes(damaged.read_bytes() + b"\0")
            problem = (
                f"{damaged.name} has md5 {file_md5(damaged)} ({damaged.stat().st_size} bytes), "
                f"expected {spec.md5}"
            )
        damaged.chmod(0o444)
        before = state()
        with pytest.raises(DatasetError) as error:
            prepare_dataset(source, tmp_path / "again", raw_sources={source: given})
        message = str(error.value)
        assert message.startswith(
            f"dataset {source!r}: the raw files of {source!r} in {files} are missing or damaged"
        )
        assert message.endswith(f"): {problem}")
        assert state() == before and list(scratch.iterdir()) == []
        assert not (tmp_path / "again" / source).exists()
    finally:  # let pytest remove tmp_path when not run as root
        for path in entries:
            path.chmod(0o755 if path.is_dir() else 0o644)


def test_raw_sources_keys_and_values_are_checked(tmp_path):
    known = "known: bdd100k, caltech101, caltech256, cifar10, cifar100, cityscapes"
    with pytest.raises(DatasetError, match=f"unknown raw source 'mnist'; {known}"):
        prepare_dataset("moons", tmp_path, raw_sources={"mnist": tmp_path})
    with pytest.raises(DatasetError, match="the folder of 'svhn' is empty"):
        prepare_dataset("svhn", tmp_path, raw_sources={"svhn": ""})


def test_layout_md5_sums_are_torchvision_s():
    def sums(source):
        return {spec.name: spec.md5 for spec in LAYOUTS[source].files}

    for source in ("cifar10", "cifar100"):
        cls = TORCHVISION[source]
        assert LAYOUTS[source].subfolder == cls.base_folder
        listed = dict(cls.train_list + cls.test_list) | {cls.meta["filename"]: cls.meta["md5"]}
        assert sums(source) == listed
    svhn = datasets.SVHN.split_list
    assert sums("svhn") == {svhn[s][1]: svhn[s][2] for s in ("train", "test")}
    fashion = LAYOUTS["fashion_mnist"]
    assert fashion.subfolder == "FashionMNIST/raw"
    resources = dict(datasets.FashionMNIST.resources)
    assert {f"{spec.name}.gz": spec.gz_md5 for spec in fashion.files} == resources


# ------------------------------------------------------------------------------ CLI


def test_cli_prepare_with_source(tmp_path, monkeypatch, capsys):
    files = write("fashion_mnist", tmp_path / "raw")
    trust(monkeypatch, "fashion_mnist", files)
    data = tmp_path / "data"
    code = main(["prepare", "fashion_mnist", "--source", str(files), "--data-dir", str(data)])
    assert code == 0
    out = capsys.readouterr().out
    assert out.startswith("fashion_mnist: 30 train / 11 test, 10 classes, input (1, 28, 28)")
    assert meta(data, "fashion_mnist")["source"] == str(files)


def test_cli_source_errors(tmp_path, capsys):
    assert main(["prepare", "moons", "--source", str(tmp_path), "--data-dir", str(tmp_path)]) == 2
    assert (
        "tavaal: error: dataset 'moons' is not read from raw files; --source applies to "
        "bdd100k, caltech101, caltech256, cifar10, cifar100, cityscapes, fashion_mnist, "
        "imagenet, svhn" in capsys.readouterr().err
    )
    args = ["prepare", "cifar10_ent165", "--source", str(tmp_path), "--data-dir", str(tmp_path)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "the raw files of 'cifar10' in" in err and "data_batch_1 missing" in err
    with pytest.raises(SystemExit) as exit_:
        main(["prepare", "svhn", "--source", str(tmp_path), "--download"])
    assert exit_.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


# ---------------------------------------------------------------- the real Fashion-MNIST

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
REQUIRE_ENV = "TAVAAL_REQUIRE_FASHION_MNIST"


def _required() -> bool:
    return os.environ.get(REQUIRE_ENV, "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="module")
def debian_folder() -> Path:
    missing = [
        name
        for name in LAYOUTS["fashion_mnist"].names
        if not (DEBIAN_FASHION_MNIST / f"{name}.gz").is_file()
    ]
    if missing:
        reason = f"Debian's dataset-fashion-mnist is not installed ({DEBIAN_FASHION_MNIST})"
        if _required():
            pytest.fail(f"{REQUIRE_ENV} is set but {reason}", pytrace=False)
        pytest.skip(reason)
    return DEBIAN_FASHION_MNIST


@pytest.fixture(scope="module")
def real(debian_folder, tmp_path_factory):
    """The real Fashion-MNIST, prepared once from the package folder; with the seconds it took."""
    before = snapshot(debian_folder)
    data_dir = tmp_path_factory.mktemp("fashion")
    start = time.perf_counter()
    prepare_dataset("fashion_mnist", data_dir, raw_sources={"fashion_mnist": debian_folder})
    seconds = time.perf_counter() - start
    assert snapshot(debian_folder) == before
    return open_prepared("fashion_mnist", data_dir), data_dir, seconds


def _idx_gz(path: Path, magic: int) -> np.ndarray:
    """Parsed here, independently of tavaal: the big-endian header, then unsigned bytes."""
    data = gzip.decompress(path.read_bytes())
    ndim = magic & 0xFF
    assert struct.unpack(">I", data[:4]) == (magic,)
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def test_real_fashion_mnist_from_the_debian_package(real, debian_folder):
    ds, data_dir, seconds = real
    assert ds.x_train.shape == (60000, 28, 28, 1) and ds.x_test.shape == (10000, 28, 28, 1)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    assert np.bincount(ds.y_train).tolist() == [6000] * 10
    assert np.bincount(ds.y_test).tolist() == [1000] * 10
    assert (ds.info.n_train, ds.info.n_test) == known_split_sizes("fashion_mnist")
    assert ds.info.classes[0] == "T-shirt/top" and ds.info.classes[9] == "Ankle boot"
    # The usual normalisation constants of Fashion-MNIST, exactly 0.2860406 and 0.3530242.
    assert round(ds.info.mean[0], 4) == 0.2860 and round(ds.info.std[0], 4) == 0.3530
    # Facts computed once from the raw files: pixel sums, the first labels (ankle boot first).
    assert int(ds.x_train.sum(dtype=np.int64)) == 3_431_114_169
    assert int(ds.x_test.sum(dtype=np.int64)) == 573_469_082
    assert int(ds.x_train[0].sum(dtype=np.int64)) == 76_247 and ds.x_train[0, 14, 14, 0] == 217
    assert ds.y_train[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert ds.y_test[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    # Every value against the package's files, parsed here: idx3 magic 0x803, idx1 magic 0x801.
    for prefix, part in (("train", "train"), ("t10k", "test")):
        images = _idx_gz(debian_folder / f"{prefix}-images-idx3-ubyte.gz", 0x803)
        labels = _idx_gz(debian_folder / f"{prefix}-labels-idx1-ubyte.gz", 0x801)
        assert np.array_equal(getattr(ds, f"x_{part}")[..., 0], images)
        assert np.array_equal(getattr(ds, f"y_{part}"), labels)
    recorded = meta(data_dir, "fashion_mnist")
    assert recorded["source"] == str(debian_folder) and recorded["raw_md5_verified"] is True
    # About 5 s on 2 busy cores, torchvision imported already (this module imports it); the
    # generous bound catches a slow path, not jitter.
    assert seconds < 30


def test_real_fashion_mnist_through_the_cli(real, debian_folder, tmp_path, capsys):
    _, library_dir, _ = real
    before = snapshot(debian_folder)
    code = main(
        ["prepare", "fashion_mnist", "--source", str(debian_folder), "--data-dir", str(tmp_path)]
    )
    assert code == 0
    assert capsys.readouterr().out.startswith(
        "fashion_mnist: 60000 train / 10000 test, 10 classes, input (1, 28, 28)"
    )
    assert snapshot(debian_folder) == before
    for name in ("x_train.npy", "y_train.npy", "x_test.npy", "y_test.npy", "meta.json"):
        library = (library_dir / "fashion_mnist" / name).read_bytes()
        assert (tmp_path / "fashion_mnist" / name).read_bytes() == library, name


@pytest.mark.slow  # Snakemake's start-up: about 15 s
def test_real_fashion_mnist_through_the_workflow_rule(real, debian_folder, tmp_path):
    _, library_dir, _ = real
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    # The rule's dataset wildcard is limited to the datasets of the experiments run.
    extra = {
        "raw_sources": {"fashion_mnist": str(debian_folder)},
        "run_experiments": ["fashion"],
        "experiments": {"fashion": {"dataset": "fashion_mnist", "model": "resnet18"}},
    }
    (tmp_path / "extra.yaml").write_text(json.dumps(extra))
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]
    command += ["--directory", str(tmp_path), "--configfile", str(tmp_path / "extra.yaml")]
    command += ["--cores", "1", "data/fashion_mnist"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert meta(tmp_path / "data", "fashion_mnist") == meta(library_dir, "fashion_mnist")
    x_train = tmp_path / "data" / "fashion_mnist" / "x_train.npy"
    assert x_train.read_bytes() == (library_dir / "fashion_mnist" / "x_train.npy").read_bytes()
