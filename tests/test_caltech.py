"""Caltech-101 and Caltech-256 prepared from tiny trees in torchvision's on-disk layouts.

``<root>/caltech101/101_ObjectCategories/<class>/image_NNNN.jpg`` (with BACKGROUND_Google,
Faces and Faces_easy) and ``<root>/caltech256/256_ObjectCategories/<nnn>.<class>/<nnn>_NNNN.jpg``
(257 folders, 257.clutter last). The trees hold a few small JPEGs per class, in RGB, grey-scale
(as Caltech has) and CMYK, of several aspect ratios; `SETS` is replaced by their sizes, since the
real ones are refused for any tree but the full archives.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tavaal.data import (
    caltech,
    known_input_shape,
    known_split_sizes,
    prepare_dataset,
    storage,
    stratified,
)
from tavaal.data.image_folder import load_image
from tavaal.data.registry import fixed_seed
from tavaal.errors import DatasetError

# Class folder -> image modes, one image each (sorted as on disk; torchvision's order).
TREE_101 = {
    "BACKGROUND_Google": ["RGB", "RGB", "L"],
    "Faces": ["RGB", "RGB", "RGB"],
    "Faces_easy": ["RGB", "RGB", "RGB"],
    "Leopards": ["RGB", "CMYK"],
    "accordion": ["RGB", "RGB", "RGB"],
    "car_side": ["L", "L", "L"],
}
CLASSES_101 = ("Faces", "Faces_easy", "Leopards", "accordion", "car_side", "BACKGROUND_Google")


def _jpeg(path: Path, mode: str, rng: np.random.Generator) -> None:
    """A small JPEG of random size and colour (distinct images decode to distinct arrays)."""
    height, width = (int(v) for v in rng.integers(12, 40, size=2))
    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels, "RGB").convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "JPEG", quality=90)


def write_caltech101(root: Path) -> dict[Path, str]:
    """The tree under ``root/caltech101/101_ObjectCategories``; image -> its class folder."""
    rng = np.random.default_rng(101)
    base = root / "caltech101" / "101_ObjectCategories"
    written = {}
    for folder, modes in TREE_101.items():
        for i, mode in enumerate(modes, start=1):
            path = base / folder / f"image_{i:04d}.jpg"
            _jpeg(path, mode, rng)
            written[path] = folder
    return written


def write_caltech256(root: Path) -> dict[Path, int]:
    """257 numbered folders (one image each, three in 001 and 257, a grey one in 002) under
    ``root/caltech256/256_ObjectCategories``, plus a stray file and sub-folder that are not
    images of the class; image -> its class index (nnn - 1)."""
    rng = np.random.default_rng(256)
    base = root / "caltech256" / "256_ObjectCategories"
    names = {1: "ak47", 2: "american-flag", 253: "faces-easy-101", 257: "clutter"}
    written = {}
    for number in range(1, 258):
        folder = base / f"{number:03d}.{names.get(number, f'class{number}')}"
        count = 3 if number in (1, 257) else 1
        for i in range(1, count + 1):
            path = folder / f"{number:03d}_{i:04d}.jpg"
            _jpeg(path, "L" if number == 2 else "RGB", rng)
            written[path] = number - 1
    (base / "198.class198" / "RENAME2").write_text("not an image\n")
    _jpeg(base / "056.class56" / "greg" / "056_0001.jpg", "RGB", rng)
    return written


def _expect(monkeypatch, source: str, n_train: int, n_test: int) -> None:
    sizes = dataclasses.replace(caltech.SETS[source], n_train=n_train, n_test=n_test)
    monkeypatch.setitem(caltech.SETS, source, sizes)


def _rows_to_files(x: np.ndarray, decoded: dict[Path, np.ndarray]) -> list[Path]:
    """The file each prepared image was decoded from (each file's decode is unique)."""
    by_bytes = {array.tobytes(): path for path, array in decoded.items()}
    assert len(by_bytes) == len(decoded)
    return [by_bytes[row.tobytes()] for row in np.asarray(x)]


def test_registered_sizes_and_shapes():
    assert known_split_sizes("caltech101") == (8125, 1019)
    assert known_split_sizes("caltech256") == (27607, 3000)
    assert known_input_shape("caltech101") == known_input_shape("caltech256") == (3, 224, 224)


def test_caltech101_classes_labels_and_pixels(tmp_path, monkeypatch):
    written = write_caltech101(tmp_path / "raw")
    _expect(monkeypatch, "caltech101", 14, 3)
    folder = prepare_dataset(
        "caltech101", tmp_path / "data", raw_sources={"caltech101": tmp_path / "raw"}, log=print
    )
    meta = json.loads((folder / "meta.json").read_text())
    assert tuple(meta["classes"]) == CLASSES_101  # torchvision's, then the background
    assert meta["input_shape"] == [3, 224, 224] and (meta["n_train"], meta["n_test"]) == (14, 3)
    assert meta["source"] == str((tmp_path / "raw/caltech101/101_ObjectCategories").absolute())
    assert meta["raw_md5_verified"] is False
    x_train, x_test = np.load(folder / "x_train.npy"), np.load(folder / "x_test.npy")
    y_train, y_test = np.load(folder / "y_train.npy"), np.load(folder / "y_test.npy")
    assert x_train.shape == (14, 224, 224, 3) and x_train.dtype == np.uint8
    assert x_test.shape == (3, 224, 224, 3) and y_test.dtype == np.int64
    decoded = {path: load_image(path, 224) for path in written}
    files = _rows_to_files(x_train, decoded) + _rows_to_files(x_test, decoded)
    assert sorted(files) == sorted(written)  # every image once, in one split
    labels = np.concatenate([y_train, y_test])
    assert [CLASSES_101[label] for label in labels] == [written[path] for path in files]
    # Grey-scale images become RGB with three equal channels.
    grey = [i for i, path in enumerate(files) if written[path] == "car_side"]
    rows = np.concatenate([x_train, x_test])[grey]
    assert (rows[..., 0] == rows[..., 1]).all() and (rows[..., 1] == rows[..., 2]).all()


def test_split_is_stratified_seeded_and_in_file_order(tmp_path, monkeypatch):
    written = write_caltech101(tmp_path / "raw")
    _expect(monkeypatch, "caltech101", 14, 3)
    folder = prepare_dataset(
        "caltech101", tmp_path / "data", raw_sources={"caltech101": tmp_path / "raw"}, log=print
    )
    # Files by class (torchvision's order, background last), then by name.
    files = sorted(written, key=lambda p: (CLASSES_101.index(written[p]), p.name))
    labels = np.array([CLASSES_101.index(written[p]) for p in files])
    train, test = stratified.split_indices(labels, 3, fixed_seed("caltech101/split"))
    for part, positions in (("train", train), ("test", test)):
        expected = np.stack([load_image(files[i], 224) for i in positions])
        assert np.array_equal(np.load(folder / f"x_{part}.npy"), expected)
        assert np.array_equal(np.load(folder / f"y_{part}.npy"), labels[positions])


def test_same_tree_gives_the_same_bytes(tmp_path, monkeypatch):
    write_caltech101(tmp_path / "raw")
    _expect(monkeypatch, "caltech101", 14, 3)
    sources = {"caltech101": tmp_path / "raw"}
    first = prepare_dataset("caltech101", tmp_path / "a", raw_sources=sources, log=print)
    second = prepare_dataset("caltech101", tmp_path / "b", raw_sources=sources, log=print)
    for name in ("x_train.npy", "y_train.npy", "x_test.npy", "y_test.npy", "meta.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_test_counts_are_exact_and_proportional():
    rng = np.random.default_rng(0)
    for total, n_test in ((9144, 1019), (30607, 3000)):
        for _ in range(200):
            classes = int(rng.integers(2, 300))
            cuts = np.sort(rng.choice(np.arange(1, total), size=classes - 1, replace=False))
            sizes = np.diff(np.concatenate([[0], cuts, [total]]))
            counts = stratified.per_class_test_counts(sizes, n_test)
            assert counts.sum() == n_test
            assert (np.abs(counts - sizes * n_test / total) < 1).all()
    # Ties go to the lower class index.
    assert stratified.per_class_test_counts(np.array([2, 2, 2]), 1).tolist() == [1, 0, 0]


def test_a_tree_of_another_size_is_refused_with_both_counts(tmp_path):
    write_caltech101(tmp_path / "raw")
    with pytest.raises(DatasetError) as info:
        prepare_dataset(
            "caltech101", tmp_path / "data", raw_sources={"caltech101": tmp_path / "raw"}
        )
    message = str(info.value)
    assert "holds 17 images in 6 class folders" in message
    assert "the full Caltech-101 has 9144 in 102 (8125 train + 1019 test" in message
    assert not (tmp_path / "data").exists()


def test_missing_tree_names_the_layout(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError) as info:
        prepare_dataset("caltech256", tmp_path / "data", raw_sources={"caltech256": tmp_path})
    assert "DIR/caltech256/256_ObjectCategories/<nnn>.<class>/<nnn>_NNNN.jpg" in str(info.value)
    assert "never downloaded into" in str(info.value)
    with pytest.raises(DatasetError) as info:
        prepare_dataset("caltech101", tmp_path / "data")
    message = str(info.value)
    assert f"{tmp_path / 'data' / 'raw'}/caltech101/101_ObjectCategories/<class>/" in message
    assert "--download" in message and "--source DIR" in message


def test_caltech256_class_from_the_number_with_clutter_last(tmp_path, monkeypatch):
    written = write_caltech256(tmp_path / "raw")
    _expect(monkeypatch, "caltech256", 240, 21)
    folder = prepare_dataset(
        "caltech256",
        tmp_path / "data",
        raw_sources={"caltech256": tmp_path / "raw" / "caltech256"},  # DIR/256_ObjectCategories
        log=print,
    )
    meta = json.loads((folder / "meta.json").read_text())
    assert len(meta["classes"]) == 257 and meta["num_classes"] == 257
    assert meta["classes"][:2] == ["ak47", "american-flag"]
    assert meta["classes"][252] == "faces-easy-101" and meta["classes"][256] == "clutter"
    decoded = {path: load_image(path, 224) for path in written}
    x = np.concatenate([np.load(folder / "x_train.npy"), np.load(folder / "x_test.npy")])
    y = np.concatenate([np.load(folder / "y_train.npy"), np.load(folder / "y_test.npy")])
    files = _rows_to_files(x, decoded)  # the stray file and the sub-folder's image are not read
    assert sorted(files) == sorted(written)
    assert y.tolist() == [written[path] for path in files]


def test_caltech256_numbering_gap_is_refused(tmp_path):
    base = tmp_path / "256_ObjectCategories"
    rng = np.random.default_rng(1)
    for folder in ("001.ak47", "003.backpack"):
        _jpeg(base / folder / f"{folder[:3]}_0001.jpg", "RGB", rng)
    with pytest.raises(DatasetError, match=r"not the numbers 002"):
        prepare_dataset("caltech256", tmp_path / "data", raw_sources={"caltech256": tmp_path})


def test_images_are_decoded_into_the_staged_memory_maps(tmp_path, monkeypatch):
    written = write_caltech101(tmp_path / "raw")
    _expect(monkeypatch, "caltech101", 14, 3)
    monkeypatch.setattr(caltech, "PROGRESS_EVERY", 5)
    monkeypatch.setattr(storage, "_STATS_CHUNK_BYTES", 224 * 224 * 3 * 4)  # 4 images a chunk
    saved = []
    real_save = np.save

    def spy_save(file, array, *args, **kwargs):
        saved.append(Path(file.name).name)
        return real_save(file, array, *args, **kwargs)

    monkeypatch.setattr(np, "save", spy_save)
    lines: list[str] = []
    folder = prepare_dataset(
        "caltech101",
        tmp_path / "data",
        raw_sources={"caltech101": tmp_path / "raw"},
        log=lines.append,
    )
    assert sorted(saved) == ["y_test.npy", "y_train.npy"]  # x_*.npy are the builder's files
    assert lines[0].startswith("caltech101: decoding 17 images from ")
    progress = [line for line in lines if "images decoded" in line]
    assert [line.split()[1] for line in progress] == ["5/17", "10/17", "15/17", "17/17"]
    assert all(line.endswith("images/s)") for line in progress)
    # The chunked statistics equal those of the whole train split at once.
    x_train = np.load(folder / "x_train.npy")
    meta = json.loads((folder / "meta.json").read_text())
    mean = x_train.reshape(-1, 3).astype(np.float64).mean(axis=0) / 255
    assert np.allclose(meta["mean"], mean, rtol=0, atol=1e-12)
    decoded = {path: load_image(path, 224) for path in written}
    assert len(_rows_to_files(x_train, decoded)) == 14


def test_killed_decoding_leaves_nothing_and_restarts(tmp_path, monkeypatch):
    write_caltech101(tmp_path / "raw")
    _expect(monkeypatch, "caltech101", 14, 3)
    sources = {"caltech101": tmp_path / "raw"}
    calls = []

    def killed(path, size):
        calls.append(path)
        if len(calls) == 9:
            raise KeyboardInterrupt  # the job is stopped halfway through decoding
        return load_image(path, size)

    monkeypatch.setattr(caltech, "load_image", killed)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset("caltech101", tmp_path / "data", raw_sources=sources, log=print)
    assert list((tmp_path / "data").iterdir()) == []  # no staging folder, no dataset
    monkeypatch.setattr(caltech, "load_image", load_image)
    folder = prepare_dataset("caltech101", tmp_path / "data", raw_sources=sources, log=print)
    assert sorted(p.name for p in folder.parent.iterdir()) == ["caltech101"]


def test_download_goes_through_torchvision(tmp_path, monkeypatch):
    from torchvision import datasets

    calls = []

    class FakeCaltech101:
        def __init__(self, root, download=False):
            calls.append((root, download))
            write_caltech101(Path(root))  # what the real download extracts there

    monkeypatch.setattr(datasets, "Caltech101", FakeCaltech101)
    _expect(monkeypatch, "caltech101", 14, 3)
    folder = prepare_dataset("caltech101", tmp_path / "data", download=True, log=print)
    assert calls == [(str((tmp_path / "data" / "raw").absolute()), True)]
    meta = json.loads((folder / "meta.json").read_text())
    raw = tmp_path / "data" / "raw" / "caltech101" / "101_ObjectCategories"
    assert meta["source"] == str(raw.absolute()) and meta["n_test"] == 3


def test_cli_prepare_with_source(tmp_path, monkeypatch, capsys):
    from tavaal.cli import main

    write_caltech101(tmp_path / "raw")
    _expect(monkeypatch, "caltech101", 14, 3)
    args = ["prepare", "caltech101", "--source", str(tmp_path / "raw")]
    assert main([*args, "--data-dir", str(tmp_path / "data")]) == 0
    out = capsys.readouterr().out
    assert "caltech101: 17/17 images decoded" in out
    assert "caltech101: 14 train / 3 test, 6 classes, input (3, 224, 224)" in out
