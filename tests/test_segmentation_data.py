"""Segmentation datasets prepared from tiny trees in the true on-disk layouts.

Cityscapes: ``leftImg8bit/{train,val}/<city>/<name>_leftImg8bit.png`` (RGB PNGs) and
``gtFine/{train,val}/<city>/<name>_gtFine_labelIds.png`` (8-bit label-id PNGs with real
Cityscapes ids, some of them not evaluated), next to the ``_color.png``/``_instanceIds.png``/
``_polygons.json`` files the download also has. BDD100K: JPEG images with 8-bit train-id PNG
masks in both layouts (``images/10k`` + ``labels/sem_seg/masks``, and ``seg/images`` +
``seg/labels/*_train_id.png``). `SETS` is replaced by the trees' counts and small image sizes,
since the real ones are refused for any tree but the full downloads. Also: the mask checks of
`describe`, the unchanged meta.json of classification datasets and the generated seg_shapes.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tavaal.data import (
    IGNORE_INDEX,
    Splits,
    known_input_shape,
    known_split_sizes,
    known_task,
    list_raw_sources,
    load_dataset,
    open_prepared,
    prepare_dataset,
    raw_source,
    segmentation_sets,
    storage,
)
from tavaal.data.registry import fixed_seed
from tavaal.errors import DatasetError

RAW = (32, 16)  # (width, height) of the tiny raw images
SIZE = (20, 10)  # stored (width, height): a non-integer shrink, as 2048 -> 1376 is
# Independent of the module's table: label id -> train id of the ids the trees use
# (cityscapesScripts' labels.py); every other id there is not evaluated.
TRAIN_ID = {7: 0, 8: 1, 11: 2, 21: 8, 23: 10, 24: 11, 26: 13, 33: 18}
NOT_EVALUATED = (0, 1, 4, 9, 14, 29, 30)  # unlabeled, ego vehicle, static, parking, ...
CITY_TRAIN = {"aachen": 3, "bochum": 2, "zurich": 1}
CITY_VAL = {"frankfurt": 1, "lindau": 1}
STRIPES = (7, 26, 0, 33)  # label ids of the four 8-pixel-wide columns of the first mask


def _rgb(rng: np.random.Generator, size=RAW) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8))


def _label_ids(rng: np.random.Generator, first: bool) -> np.ndarray:
    """A (H, W) uint8 label-id map: four vertical stripes for the first mask, else random
    evaluated and not-evaluated ids."""
    if first:
        return np.repeat(np.array(STRIPES, dtype=np.uint8), RAW[0] // 4)[None].repeat(RAW[1], 0)
    ids = np.array(list(TRAIN_ID) + list(NOT_EVALUATED), dtype=np.uint8)
    return rng.choice(ids, size=(RAW[1], RAW[0]))


def write_cityscapes(root: Path) -> dict[str, list[tuple[Path, Path]]]:
    """The tree under `root`; split -> (image, mask) pairs sorted by (city, name)."""
    rng = np.random.default_rng(2975)
    written: dict[str, list[tuple[Path, Path]]] = {"train": [], "val": []}
    for split, cities in (("train", CITY_TRAIN), ("val", CITY_VAL)):
        for city, count in cities.items():
            for i in range(count):
                name = f"{city}_{i:06d}_000019"
                image = root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png"
                gt = root / "gtFine" / split / city
                mask = gt / f"{name}_gtFine_labelIds.png"
                image.parent.mkdir(parents=True, exist_ok=True)
                gt.mkdir(parents=True, exist_ok=True)
                _rgb(rng).save(image)
                ids = _label_ids(rng, first=not written[split])
                Image.fromarray(ids, "L").save(mask)
                # What the download also holds beside each label-id mask; never read.
                _rgb(rng).save(gt / f"{name}_gtFine_color.png")
                instances = Image.fromarray(ids.astype(np.uint16) * 1000)  # 16-bit
                instances.save(gt / f"{name}_gtFine_instanceIds.png")
                (gt / f"{name}_gtFine_polygons.json").write_text("{}\n")
                written[split].append((image, mask))
    return written


def _expect(monkeypatch, source: str, n_train: int, n_val: int, holdout: int) -> None:
    spec = dataclasses.replace(
        segmentation_sets.SETS[source],
        n_train=n_train,
        n_val=n_val,
        holdout=holdout,
        raw_size=RAW,
        size=SIZE,
    )
    monkeypatch.setitem(segmentation_sets.SETS, source, spec)


def _image(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB").resize(SIZE, Image.Resampling.BICUBIC))


def _nearest(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.resize(SIZE, Image.Resampling.NEAREST))


def _train_ids(ids: np.ndarray) -> np.ndarray:
    table = np.full(256, 255, dtype=np.uint8)
    for label_id, train_id in TRAIN_ID.items():
        table[label_id] = train_id
    return table[ids]


def _prepare_cityscapes(tmp_path, monkeypatch, **kwargs):
    written = write_cityscapes(tmp_path / "raw")
    _expect(monkeypatch, "cityscapes", 6, 2, 2)
    folder = prepare_dataset(
        "cityscapes", tmp_path / "data", raw_sources={"cityscapes": tmp_path / "raw"}, **kwargs
    )
    return written, folder


def test_registered_sizes_shapes_tasks_and_sources():
    assert known_split_sizes("cityscapes") == (2675, 500)  # VAAL supp. Table 2
    assert known_split_sizes("bdd100k_seg") == (7000, 1000)
    assert known_split_sizes("seg_shapes") == (600, 200)
    assert known_input_shape("cityscapes") == (3, 688, 1376)  # shorter side 688
    assert known_input_shape("bdd100k_seg") == (3, 688, 1223)
    assert known_input_shape("seg_shapes") == (3, 64, 64)
    for name in ("cityscapes", "bdd100k_seg", "seg_shapes"):
        assert known_task(name) == "segmentation"
    assert known_task("digits") == "classification"
    assert raw_source("cityscapes") == "cityscapes" and raw_source("bdd100k_seg") == "bdd100k"
    assert raw_source("seg_shapes") is None
    assert {"cityscapes", "bdd100k"} <= set(list_raw_sources())
    # Both fit VAAL's 688x688 and TA-VAAL's 412x412 crops.
    assert segmentation_sets.working_size((2048, 1024)) == (1376, 688)
    assert segmentation_sets.working_size((1280, 720)) == (1223, 688)
    assert segmentation_sets.working_size((720, 1280)) == (688, 1223)


def test_cityscapes_label_table_is_torchvision_s():
    datasets = pytest.importorskip("torchvision.datasets")
    classes = datasets.Cityscapes.classes
    table = {c.id: c.train_id for c in classes if 0 <= c.train_id < 255}
    assert segmentation_sets.CITYSCAPES_TRAIN_IDS == table
    evaluated = sorted((c for c in classes if 0 <= c.train_id < 255), key=lambda c: c.train_id)
    names = tuple(c.name for c in evaluated)
    assert segmentation_sets.CLASSES_19 == names
    assert max(c.id for c in classes) == segmentation_sets.CITYSCAPES_MAX_ID
    lookup = segmentation_sets.CITYSCAPES_LOOKUP
    assert all(lookup[c.id] == 255 for c in classes if c.id >= 0 and c.train_id in (255, -1))


def test_cityscapes_masks_images_and_split(tmp_path, monkeypatch):
    written, folder = _prepare_cityscapes(tmp_path, monkeypatch, log=print)
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["task"] == "segmentation" and meta["kind"] == "image"
    assert meta["classes"] == list(segmentation_sets.CLASSES_19) and meta["num_classes"] == 19
    assert (meta["n_train"], meta["n_test"]) == (4, 2) and meta["input_shape"] == [3, 10, 20]
    assert meta["source"] == str((tmp_path / "raw").absolute())
    ds = open_prepared("cityscapes", tmp_path / "data")
    assert ds.info.task == "segmentation"
    assert ds.x_train.shape == (4, 10, 20, 3) and ds.x_train.dtype == np.uint8
    assert ds.y_train.shape == (4, 10, 20) and ds.y_train.dtype == np.uint8
    assert ds.y_test.shape == (2, 10, 20) and ds.x_test.shape == (2, 10, 20, 3)
    # Pool: the official train images, sorted by (city, name), less the fixed-seed hold-out.
    pool = segmentation_sets.pool_positions(6, 2, "cityscapes/holdout")
    assert pool.tolist() == sorted(pool.tolist()) and len(pool) == 4
    kept = [written["train"][i] for i in pool]
    for part, pairs in (("train", kept), ("test", written["val"])):
        x, y = getattr(ds, f"x_{part}"), getattr(ds, f"y_{part}")
        for row, (image, mask) in enumerate(pairs):
            assert np.array_equal(x[row], _image(image)), image
            assert np.array_equal(y[row], _train_ids(_nearest(mask))), mask
    # The first val mask: stripes of ids 7 (road), 26 (car), 0 (unlabeled), 33 (bicycle).
    # Stored column j comes from raw column floor((j + 0.5) * 32 / 20).
    first = ds.y_test[0]
    assert first[:, 0].tolist() == [0] * 10  # road
    assert first[:, :5].tolist() == [[0] * 5] * 10  # road (raw columns 0..7)
    assert first[5, 5].item() == 13 and first[5, 9].item() == 13  # car (raw 8, 15)
    assert first[5, 10].item() == 255 and first[5, 14].item() == 255  # unlabeled (raw 16, 23)
    assert first[5, 15].item() == 18 and first[5, 19].item() == 18  # bicycle (raw 24, 31)
    # Nearest neighbour: only values of the files, mapped; the not-evaluated ids became 255.
    values = set(np.unique(np.concatenate([ds.y_train, ds.y_test])).tolist())
    assert values <= set(TRAIN_ID.values()) | {255} and 255 in values and 18 in values
    fractions = np.bincount(np.asarray(ds.y_train).ravel(), minlength=256)[:19] / ds.y_train.size
    assert np.allclose(ds.info.class_pixel_fractions, fractions, rtol=0, atol=1e-15)
    assert sum(ds.info.class_pixel_fractions) < 1  # the rest is ignored


def test_holdout_is_fixed_and_leaves_the_paper_s_pool():
    pool = segmentation_sets.pool_positions(2975, 300, "cityscapes/holdout")
    assert len(pool) == 2675 and np.all(np.diff(pool) > 0)
    again = segmentation_sets.pool_positions(2975, 300, "cityscapes/holdout")
    assert np.array_equal(pool, again)
    assert fixed_seed("cityscapes/holdout") != fixed_seed("bdd100k/holdout")
    assert segmentation_sets.pool_positions(7000, 0, "bdd100k/holdout").tolist() == list(
        range(7000)
    )


def test_cityscapes_progress_and_staged_memory_maps(tmp_path, monkeypatch):
    monkeypatch.setattr(segmentation_sets, "PROGRESS_EVERY", 4)
    saved = []
    real_save = np.save

    def spy_save(file, array, *args, **kwargs):
        saved.append(Path(file.name).name)
        return real_save(file, array, *args, **kwargs)

    monkeypatch.setattr(np, "save", spy_save)
    lines: list[str] = []
    _prepare_cityscapes(tmp_path, monkeypatch, log=lines.append)
    assert saved == []  # images and masks are the builder's memory-mapped files
    assert lines[0].startswith("cityscapes: decoding 6 images and masks from ")
    assert lines[0].endswith(" at 20x10")
    progress = [line.split()[1] for line in lines if "images decoded" in line]
    assert progress == ["4/6", "6/6"]


def test_killed_preparation_leaves_nothing(tmp_path, monkeypatch):
    write_cityscapes(tmp_path / "raw")
    _expect(monkeypatch, "cityscapes", 6, 2, 2)
    real = segmentation_sets._read_image
    calls = []

    def killed(path, spec):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the job is stopped halfway through decoding
        return real(path, spec)

    monkeypatch.setattr(segmentation_sets, "_read_image", killed)
    sources = {"cityscapes": tmp_path / "raw"}
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset("cityscapes", tmp_path / "data", raw_sources=sources, log=print)
    assert list((tmp_path / "data").iterdir()) == []  # no staging folder, no dataset


def test_missing_mask_or_image_names_the_file(tmp_path, monkeypatch):
    written = write_cityscapes(tmp_path / "raw")
    _expect(monkeypatch, "cityscapes", 6, 2, 2)
    sources = {"cityscapes": tmp_path / "raw"}
    image, mask = written["train"][1]
    mask.unlink()
    with pytest.raises(DatasetError) as info:
        prepare_dataset("cityscapes", tmp_path / "data", raw_sources=sources)
    message = str(info.value)
    assert f"1 image(s) without a mask: {image} (expected {mask})" in message
    Image.fromarray(np.zeros((RAW[1], RAW[0]), np.uint8), "L").save(mask)
    val_image, val_mask = written["val"][1]
    val_image.unlink()
    with pytest.raises(DatasetError) as info:
        prepare_dataset("cityscapes", tmp_path / "data", raw_sources=sources)
    assert f"1 mask(s) without an image: {val_mask} (expected {val_image})" in str(info.value)
    assert not (tmp_path / "data").exists()


def test_wrong_counts_name_both(tmp_path):
    write_cityscapes(tmp_path / "raw" / "cityscapes")  # DIR/cityscapes/ is searched too
    with pytest.raises(DatasetError) as info:
        sources = {"cityscapes": tmp_path / "raw"}
        prepare_dataset("cityscapes", tmp_path / "data", raw_sources=sources)
    message = str(info.value)
    assert f"{tmp_path / 'raw' / 'cityscapes'} holds 6 train and 2 val image/mask pairs" in message
    assert "the full Cityscapes has 2975 train and 500 val (VAAL supp. Table 2)" in message
    assert not (tmp_path / "data").exists()


def test_missing_tree_and_wrong_sizes(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError) as info:
        sources = {"cityscapes": tmp_path / "empty"}
        prepare_dataset("cityscapes", tmp_path / "d", raw_sources=sources)
    message = str(info.value)
    assert "DIR/leftImg8bit/{train,val}/<city>/<name>_leftImg8bit.png" in message
    assert "gtFine/{train,val}/<city>/<name>_gtFine_labelIds.png" in message
    assert "needs an account" in message and "nothing is downloaded" in message
    with pytest.raises(DatasetError, match=r"raw/bdd100k/images/10k/\{train,val\}/<name>\.jpg"):
        prepare_dataset("bdd100k_seg", tmp_path / "d")
    written = write_cityscapes(tmp_path / "raw")
    _expect(monkeypatch, "cityscapes", 6, 2, 2)
    mask = written["val"][0][1]
    Image.fromarray(np.zeros((RAW[1] + 1, RAW[0]), np.uint8), "L").save(mask)
    with pytest.raises(DatasetError, match=rf"{mask}: 32x17 pixels; every Cityscapes mask is 32x"):
        prepare_dataset("cityscapes", tmp_path / "d", raw_sources={"cityscapes": tmp_path / "raw"})
    Image.fromarray(np.full((RAW[1], RAW[0]), 34, np.uint8), "L").save(mask)
    with pytest.raises(DatasetError, match=rf"{mask}: holds the value 34"):
        prepare_dataset("cityscapes", tmp_path / "d", raw_sources={"cityscapes": tmp_path / "raw"})


def write_bdd(root: Path, layout: str) -> dict[str, list[tuple[Path, Path]]]:
    """JPEG images and train-id masks (0..18 and 255) in one of BDD100K's two layouts."""
    rng = np.random.default_rng(7000)
    values = np.array([0, 2, 8, 10, 13, 18, 255], dtype=np.uint8)
    written: dict[str, list[tuple[Path, Path]]] = {}
    for split, count in (("train", 4), ("val", 2)):
        written[split] = []
        for i in range(count):
            name = f"{i:08x}-{7 * i:08x}"
            if layout == "10k":
                image = root / "images" / "10k" / split / f"{name}.jpg"
                mask = root / "labels" / "sem_seg" / "masks" / split / f"{name}.png"
            else:
                image = root / "seg" / "images" / split / f"{name}.jpg"
                mask = root / "seg" / "labels" / split / f"{name}_train_id.png"
            image.parent.mkdir(parents=True, exist_ok=True)
            mask.parent.mkdir(parents=True, exist_ok=True)
            _rgb(rng).save(image, "JPEG", quality=90)
            Image.fromarray(rng.choice(values, size=(RAW[1], RAW[0])), "L").save(mask)
            if layout == "seg":  # the colour rendering beside it in that release; never read
                _rgb(rng).save(mask.parent / f"{name}_train_color.png")
            written[split].append((image, mask))
    return written


@pytest.mark.parametrize("layout", ["10k", "seg"])
def test_bdd100k_both_layouts(tmp_path, monkeypatch, layout):
    written = write_bdd(tmp_path / "raw" / "bdd100k", layout)
    _expect(monkeypatch, "bdd100k", 4, 2, 0)
    # DIR may hold bdd100k/ (the archives' top folder) or be it.
    ds = load_dataset("bdd100k_seg", tmp_path / "data", raw_sources={"bdd100k": tmp_path / "raw"})
    assert ds.info.task == "segmentation" and ds.info.n_train == 4 and ds.info.n_test == 2
    for part, pairs in (("train", written["train"]), ("test", written["val"])):
        x, y = getattr(ds, f"x_{part}"), getattr(ds, f"y_{part}")
        for row, (image, mask) in enumerate(pairs):
            assert np.array_equal(x[row], _image(image)), image
            assert np.array_equal(y[row], _nearest(mask)), mask  # train ids as they are
    values = set(np.unique(ds.y_train).tolist())
    assert values <= {0, 2, 8, 10, 13, 18, 255} and IGNORE_INDEX in values


def test_bdd100k_mask_values_are_checked(tmp_path, monkeypatch):
    written = write_bdd(tmp_path / "raw", "10k")
    _expect(monkeypatch, "bdd100k", 4, 2, 0)
    mask = written["train"][2][1]
    ids = np.zeros((RAW[1], RAW[0]), np.uint8)
    ids[3, 4] = 19
    Image.fromarray(ids, "L").save(mask)
    with pytest.raises(DatasetError, match=rf"{mask}: holds the value 19; .* 0\.\.18 and 255"):
        prepare_dataset("bdd100k_seg", tmp_path / "d", raw_sources={"bdd100k": tmp_path / "raw"})
    Image.fromarray(np.zeros((RAW[1], RAW[0], 3), np.uint8)).save(mask)  # a colour rendering
    with pytest.raises(DatasetError, match=rf"{mask}: a RGB image; a mask is a one-channel"):
        prepare_dataset("bdd100k_seg", tmp_path / "d", raw_sources={"bdd100k": tmp_path / "raw"})


def _seg_splits(y_test: np.ndarray | None = None, **changes) -> Splits:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(3, 4, 5, 3), dtype=np.uint8)
    y = np.array([0, 1, 2, 255], dtype=np.uint8)[rng.integers(0, 4, size=(3, 4, 5))]
    splits = Splits(x, y, x[:2], y[:2] if y_test is None else y_test, ("a", "b", "c"))
    return dataclasses.replace(splits, task="segmentation", **changes)


def test_describe_checks_the_masks():
    info = storage.describe("toy", _seg_splits())
    assert info.task == "segmentation" and info.kind == "image" and info.input_shape == (3, 4, 5)
    y = _seg_splits().y_train
    counts = np.bincount(y.ravel(), minlength=256)
    assert info.class_pixel_fractions == tuple(counts[:3] / y.size)
    bad = np.zeros((2, 4, 5), dtype=np.uint8)
    bad[1, 2, 3] = 3  # three classes: 0..2 and 255 only
    with pytest.raises(DatasetError) as error:
        storage.describe("toy", _seg_splits(bad))
    message = str(error.value)
    assert message.startswith("dataset 'toy': test masks hold the value 3 (1 pixels, first in")
    assert "first in mask 1)" in message
    assert "class indices 0..2 or 255 (ignore)" in message
    with pytest.raises(DatasetError, match="y_test is int64 with 3 dims; expected uint8 with 3"):
        storage.describe("toy", _seg_splits(np.zeros((2, 4, 5), dtype=np.int64)))
    with pytest.raises(DatasetError, match=r"test masks are \(4, 4\) \(H, W\), the images \(4, 5"):
        storage.describe("toy", _seg_splits(np.zeros((2, 4, 4), dtype=np.uint8)))
    with pytest.raises(DatasetError, match="y_train is uint8 with 1 dims; expected uint8 with 3"):
        storage.describe("toy", _seg_splits(y_train=np.zeros(3, dtype=np.uint8)))
    with pytest.raises(DatasetError, match="a segmentation dataset holds images"):
        vectors = np.zeros((3, 2), dtype=np.float32)
        storage.describe("toy", _seg_splits(x_train=vectors, x_test=vectors[:2]))


def test_classification_meta_json_is_unchanged(tmp_path):
    # What storage wrote before segmentation existed: exactly these keys.
    before = (
        "class_groups",
        "classes",
        "input_shape",
        "kind",
        "mean",
        "n_test",
        "n_train",
        "name",
        "num_classes",
        "std",
        "train_labels_known",
    )
    for name in ("moons", "digits"):
        folder = prepare_dataset(name, tmp_path, log=print)
        info = open_prepared(name, tmp_path).info
        assert info.task == "classification" and info.class_pixel_fractions == ()
        fields = dataclasses.asdict(info)
        expected = {"format_version": 1, **{key: fields[key] for key in before}}
        text = json.dumps(expected, indent=2, sort_keys=True) + "\n"
        assert (folder / "meta.json").read_bytes() == text.encode(), name


@pytest.fixture(scope="module")
def seg_shapes_dir(tmp_path_factory) -> Path:
    """A data_dir with seg_shapes prepared once for the module (tests copy it to change it)."""
    data_dir = tmp_path_factory.mktemp("shapes")
    prepare_dataset("seg_shapes", data_dir, log=print)
    return data_dir


def test_segmentation_meta_json_is_checked(tmp_path, seg_shapes_dir):
    folder = tmp_path / "seg_shapes"
    shutil.copytree(seg_shapes_dir / "seg_shapes", folder)
    meta = json.loads((folder / "meta.json").read_text())
    for key, value, problem in (
        ("task", "detection", "task: 'detection' is not one of classification, segmentation"),
        ("class_pixel_fractions", [0.5], "class_pixel_fractions do not match num_classes"),
    ):
        (folder / "meta.json").write_text(json.dumps({**meta, key: value}))
        with pytest.raises(DatasetError, match=problem):
            open_prepared("seg_shapes", tmp_path)
    # Without "task" it is read as a classification dataset, whose labels do not match.
    (folder / "meta.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "task"}))
    with pytest.raises(DatasetError, match=r"y_train.npy: holds uint8 \(600, 64, 64\)"):
        open_prepared("seg_shapes", tmp_path)


def test_seg_shapes_is_deterministic_and_consistent(tmp_path, seg_shapes_dir):
    first = seg_shapes_dir / "seg_shapes"
    second = prepare_dataset("seg_shapes", tmp_path, log=print)
    for name in ("x_train.npy", "y_train.npy", "x_test.npy", "y_test.npy", "meta.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    ds = open_prepared("seg_shapes", seg_shapes_dir)
    assert ds.info.classes == ("background", "circle", "square", "triangle")
    assert ds.x_train.shape == (600, 64, 64, 3) and ds.y_test.shape == (200, 64, 64)
    assert not np.array_equal(ds.x_train[:200], ds.x_test)
    x, y = np.asarray(ds.x_train, dtype=np.float64), np.asarray(ds.y_train)
    counts = np.bincount(y.ravel(), minlength=4)
    assert counts.tolist() == [round(f * y.size) for f in ds.info.class_pixel_fractions]
    assert (counts[1:] > 0.02 * y.size).all() and sum(ds.info.class_pixel_fractions) == 1
    # Every image has a shape; each class's pixels stand out from their image's background ...
    distances = {1: [], 2: [], 3: []}
    spread = []
    for image, mask in zip(x, y, strict=True):
        assert (mask > 0).any() and (mask == 0).any()
        background = image[mask == 0]
        centre = background.mean(axis=0)
        spread.append(np.abs(background - centre).sum(axis=1).mean())
        for cls in np.unique(mask[mask > 0]):
            distances[int(cls)].append(np.abs(image[mask == cls] - centre).sum(axis=1).mean())
    for cls, values in distances.items():
        assert np.median(values) > 1.5 * np.median(spread), cls
    # ... yet colour alone does not tell the classes apart: their mean colours are alike.
    means = np.array([x[y == cls].mean(axis=0) for cls in range(4)])
    assert np.abs(means - means.mean(axis=0)).max() < 20


def test_cli_prepare_cityscapes_with_source(tmp_path, monkeypatch, capsys):
    from tavaal.cli import main

    write_cityscapes(tmp_path / "raw")
    _expect(monkeypatch, "cityscapes", 6, 2, 2)
    args = ["prepare", "cityscapes", "--source", str(tmp_path / "raw")]
    assert main([*args, "--data-dir", str(tmp_path / "data")]) == 0
    out = capsys.readouterr().out
    assert "cityscapes: 6/6 images decoded" in out
    assert "cityscapes: 4 train / 2 test, 19 classes, input (3, 10, 20)" in out


def test_an_experiment_on_a_segmentation_dataset_takes_its_methods_but_not_a_classifier():
    """Every method that selects on segmentation (all but BADGE) runs on it; a classifier on a
    segmentation dataset is refused, its model key named."""
    from tavaal.config import ExperimentConfig
    from tavaal.errors import ConfigError
    from tavaal.strategies import list_strategies
    from tavaal.validation import check_experiment

    settings = {
        "dataset": "seg_shapes",
        "model": "drn_d_22",
        "methods": list_strategies("segmentation"),
        "initial_size": 8,
        "budget": 4,
        "train": {"dropout": 0.3},
    }
    check_experiment(ExperimentConfig.from_dict("seg", settings))
    classifier = ExperimentConfig.from_dict("seg", {**settings, "model": "resnet18"})
    with pytest.raises(ConfigError, match=r"experiments\.seg\.model: resnet18 is a classification"):
        check_experiment(classifier)
