"""Datasets read from their image files (issue 12): `ImageFiles`, ImageNet's tree, and image
folders of ImageNet's shape (``layout: class_folders``) stored as arrays or as files.

The end-to-end Snakemake run of every method on a 224-pixel tree stored as files is in
tests/test_workflow.py (slow).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import torch
from PIL import Image

from tavaal.config import ExperimentConfig
from tavaal.data import (
    declare_image_folders,
    imagenet,
    load_dataset,
    prepare_dataset,
    stored_as_files,
)
from tavaal.data import image_files as image_files_module
from tavaal.data.image_files import DecodeWorkerDied, ImageFiles, decode_workers
from tavaal.data.image_folder import load_image
from tavaal.data.toy_folder import TOY_CLASSES, write_class_folder_tree
from tavaal.errors import ConfigError, DatasetError
from tavaal.layout import run_file
from tavaal.pool import read_labeled
from tavaal.stage import run_init_pool, run_query, run_train
from tavaal.strategies import list_strategies, strategy_class

QUIET = lambda line: None  # noqa: E731


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """A class-per-folder tree: 6 train and 2 val JPEGs per toy class, 240-330 px."""
    return write_class_folder_tree(
        tmp_path_factory.mktemp("tree") / "shapes", pool_per_class=6, test_per_class=2, seed=5
    )


# ------------------------------------------------------------------------------ ImageFiles


def test_image_files_index_like_the_array_they_stand_for(tree):
    paths = sorted(str(p.relative_to(tree)) for p in (tree / "train").rglob("*.JPEG"))
    files = ImageFiles(tree, paths, 32, workers=1)
    stacked = np.stack([load_image(tree / p, 32) for p in paths])
    assert files.shape == stacked.shape == (18, 32, 32, 3)
    assert (files.dtype, files.ndim, len(files)) == (np.uint8, 4, 18)
    np.testing.assert_array_equal(files[3], stacked[3])
    np.testing.assert_array_equal(files[-1], stacked[-1])
    np.testing.assert_array_equal(files[2:9:3], stacked[2:9:3])
    picked = np.array([7, 0, 7, 12])
    np.testing.assert_array_equal(files[picked], stacked[picked])
    mask = np.zeros(18, dtype=bool)
    mask[[1, 4]] = True
    np.testing.assert_array_equal(files[mask], stacked[mask])
    with pytest.raises(IndexError, match="index 18 is out of range for 18 images"):
        files[np.array([0, 18])]


def test_the_worker_pool_decodes_what_the_caller_would(tree, monkeypatch):
    paths = sorted(str(p.relative_to(tree)) for p in (tree / "train").rglob("*.JPEG"))
    inline = ImageFiles(tree, paths, 40, workers=1)[np.arange(18)]
    monkeypatch.setattr(image_files_module, "INLINE_BELOW", 2)
    pooled = ImageFiles(tree, paths, 40, workers=2)[np.arange(18)[::-1]]
    np.testing.assert_array_equal(pooled, inline[::-1])
    batches = [np.array([5, 1]), np.array([17]), np.array([0, 2, 4])]
    served = list(ImageFiles(tree, paths, 40, workers=2).prefetch(iter(batches), ahead=2))
    assert [len(rows) for rows in served] == [2, 1, 3]
    for rows, batch in zip(served, batches, strict=True):
        np.testing.assert_array_equal(rows, inline[batch])


_DECODE = image_files_module._decode_one


def _decode_unless_doomed(job: tuple[str, int]) -> np.ndarray:
    """Runs in a pool worker: the worker is killed outright (as by the out-of-memory killer)
    when it reaches an image whose name says so."""
    if "doomed" in Path(job[0]).name:
        os.kill(os.getpid(), signal.SIGKILL)
    return _DECODE(job)


def test_a_killed_decoding_worker_ends_the_request_with_an_error(tree, tmp_path, monkeypatch):
    """multiprocessing.Pool waited forever for a killed worker's rows (a job hung until SLURM's
    time limit); now the request fails at once, naming what to do, and the next one works."""
    paths = sorted(str(p.relative_to(tree)) for p in (tree / "train").rglob("*.JPEG"))
    doomed = tmp_path / "doomed.JPEG"
    doomed.write_bytes((tree / paths[0]).read_bytes())
    monkeypatch.setattr(image_files_module, "INLINE_BELOW", 2)
    monkeypatch.setattr(image_files_module, "_decode_one", _decode_unless_doomed)
    files = ImageFiles(tree, [*paths, str(doomed)], 32, workers=2)
    outcome: dict = {}

    def read_all() -> None:
        try:
            files[np.arange(len(files))]
        except Exception as exc:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = exc

    reader = threading.Thread(target=read_all, daemon=True)
    reader.start()
    reader.join(timeout=120)
    assert not reader.is_alive(), "the request still waits for the killed worker"
    error = outcome.get("error")
    assert isinstance(error, DecodeWorkerDied), error
    assert "ended abruptly" in str(error) and "TAVAAL_DECODE_WORKERS, now 2" in str(error)
    survivors = ImageFiles(tree, paths, 32, workers=2)[np.arange(len(paths))]
    np.testing.assert_array_equal(survivors[0], load_image(tree / paths[0], 32))


FAST_EXIT_AFTER_DECODING = """
import sys
from pathlib import Path
import numpy as np
import psutil
from tavaal.data import image_files
from tavaal.stage import end_process
tree, paths = Path(sys.argv[1]), sys.argv[2:]
image_files.INLINE_BELOW = 2
image_files.ImageFiles(tree, paths, 32, workers=2)[np.arange(len(paths))]
print(" ".join(str(child.pid) for child in psutil.Process().children()), flush=True)
end_process()
"""


def test_a_fast_exit_stops_the_decoding_workers(tree):
    """A workflow job ends with os._exit (tavaal.stage.end_process), which skips atexit: its
    forked decoding workers outlived it, holding its stdout open (a reader waited forever)."""
    paths = sorted(str(p.relative_to(tree)) for p in (tree / "train").rglob("*.JPEG"))
    result = subprocess.run(
        [sys.executable, "-c", FAST_EXIT_AFTER_DECODING, str(tree), *paths],
        capture_output=True,
        text=True,
        timeout=120,  # before the fix: the workers keep the pipe open, and this times out
    )
    assert result.returncode == 0, result.stderr[-2000:]
    workers = [int(pid) for pid in result.stdout.split()]
    assert len(workers) == 2
    for pid in workers:
        try:
            assert psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, pid
        except psutil.NoSuchProcess:
            pass


def test_decode_workers_follow_the_environment(monkeypatch):
    monkeypatch.setenv("TAVAAL_DECODE_WORKERS", "3")
    assert decode_workers() == 3
    monkeypatch.setenv("TAVAAL_DECODE_WORKERS", "zero")
    with pytest.raises(ValueError, match="TAVAAL_DECODE_WORKERS='zero'"):
        decode_workers()
    monkeypatch.delenv("TAVAAL_DECODE_WORKERS")
    assert decode_workers() >= 1


def test_a_missing_file_is_named_when_read(tree, tmp_path):
    files = ImageFiles(tmp_path, ["train/circle/gone.JPEG"], 32, workers=1)
    with pytest.raises(DatasetError, match=r"gone\.JPEG: not a readable image"):
        files[0]


# ------------------------------------------------------------- class-folder image folders


def declare(tree: Path, storage: str, size: int = 32, **entry) -> str:
    name = f"shapes_{storage}_{size}"
    declare_image_folders(
        {
            name: {
                "path": str(tree),
                "layout": "class_folders",
                "storage": storage,
                "image_size": size,
                **entry,
            }
        }
    )
    return name


@pytest.fixture(scope="module")
def both(tree, tmp_path_factory):
    """The tree prepared as arrays and as files (32 px)."""
    data = tmp_path_factory.mktemp("data")
    names = {storage: declare(tree, storage) for storage in ("arrays", "files")}
    for name in names.values():
        prepare_dataset(name, data, log=QUIET)
    return data, names


def test_class_folders_are_labeled_by_their_folder_in_either_storage(tree, both):
    data, names = both
    arrays = load_dataset(names["arrays"], data)
    files = load_dataset(names["files"], data)
    assert isinstance(files.x_train, ImageFiles) and isinstance(arrays.x_train, np.memmap)
    assert stored_as_files(names["files"]) and not stored_as_files(names["arrays"])
    assert arrays.info.classes == files.info.classes == TOY_CLASSES
    assert (arrays.info.n_train, arrays.info.n_test) == (18, 6)
    np.testing.assert_array_equal(files.x_train[np.arange(18)], arrays.x_train)
    np.testing.assert_array_equal(files.x_test[np.arange(6)], arrays.x_test)
    np.testing.assert_array_equal(files.y_train, arrays.y_train)
    assert arrays.y_train.tolist() == [0] * 6 + [1] * 6 + [2] * 6
    assert arrays.info.mean == files.info.mean and arrays.info.std == files.info.std
    meta = json.loads((data / names["files"] / "meta.json").read_text())
    assert meta["storage"] == "files"
    assert "storage" not in json.loads((data / names["arrays"] / "meta.json").read_text())
    assert not (data / names["files"] / "x_train.npy").exists()
    listed = json.loads((data / names["files"] / "files.json").read_text())
    assert listed["train"][0] == "train/circle/circle_train_0000.JPEG"


def test_class_folder_entries_are_checked(tree, tmp_path):
    with pytest.raises(ConfigError, match=r"image_folders\.bad\.labels: not with layout"):
        declare_image_folders(
            {"bad": {"path": str(tree), "layout": "class_folders", "labels": "x.csv"}}
        )
    with pytest.raises(ConfigError, match=r"image_folders\.bad\.classes: must be exactly"):
        declare_image_folders(
            {"bad": {"path": str(tree), "layout": "class_folders", "classes": ["a", "b"]}}
        )
    with pytest.raises(ConfigError, match=r"image_folders\.bad\.storage: 'arrays' or 'files'"):
        declare_image_folders({"bad": {"path": str(tree), "classes": ["a", "b"], "storage": "x"}})
    odd = write_class_folder_tree(tmp_path / "odd", pool_per_class=1, test_per_class=1)
    (odd / "val" / "circle").rename(odd / "val" / "oval")
    with pytest.raises(DatasetError, match=r"val/oval is not one of the 3 classes"):
        declare_image_folders({"odd": {"path": str(odd), "layout": "class_folders"}})


def experiment(dataset: str, methods, **changes) -> ExperimentConfig:
    settings = {
        "dataset": dataset,
        "model": "small_cnn",
        "methods": list(methods),
        "seeds": [0],
        "initial_size": 6,
        "budget": 3,
        "stages": 2,
        "subset_size": 0,
        # Adam's small steps keep the softmaxes unsaturated, so uncertainty scores do not tie.
        "train": {
            "epochs": 2,
            "batch_size": 4,
            "milestones": [],
            "dropout": 0.3,
            "optimizer": "adam",
            "lr": 0.0005,
        },
        "vae": {
            "latent_dim": 4,
            "base_channels": 8,
            "hidden": 16,
            "disc_hidden": 16,
            "batch_size": 4,
            "epochs": 1,
            "iterations": 3,
            "input_size": 16,
        },
        "query": {"mc_samples": 3, "ensemble_size": 2, "inference_batch_size": 8},
        **changes,
    }
    return ExperimentConfig.from_dict(dataset, settings)


@pytest.fixture(scope="module")
def stage0(both, tmp_path_factory):
    """Per storage: the initial pool and each recipe's stage-0 model."""
    data, names = both
    runs = {}
    for storage, name in names.items():
        root = tmp_path_factory.mktemp(storage)
        exp = experiment(name, list_strategies())
        pool = run_file(root, name, "random", 0, 0, "labeled.parquet")
        run_init_pool(exp, 0, data, pool, log=QUIET)
        models = {}
        for method in list_strategies():
            recipe = strategy_class(method).recipe
            if recipe.name not in models:
                model = run_file(root, name, method, 0, 0, "model.pt")
                run_train(
                    exp, recipe, 0, 0, pool, data, model, model.with_name("metrics.json"),
                    device="cpu", log=QUIET,
                )  # fmt: skip
                models[recipe.name] = model
        runs[storage] = (pool, models)
    return runs


def test_training_streamed_from_files_equals_training_on_arrays(stage0):
    (pool_a, models_a), (pool_f, models_f) = stage0["arrays"], stage0["files"]
    assert read_labeled(pool_a).table.equals(read_labeled(pool_f).table)
    assert models_a.keys() == models_f.keys()
    for recipe in models_a:
        a = torch.load(models_a[recipe], weights_only=True)
        f = torch.load(models_f[recipe], weights_only=True)
        assert a["model"].keys() == f["model"].keys()
        for key in a["model"]:
            assert torch.equal(a["model"][key], f["model"][key]), (recipe, key)
        metrics_a = json.loads(models_a[recipe].with_name("metrics.json").read_text())
        metrics_f = json.loads(models_f[recipe].with_name("metrics.json").read_text())
        assert metrics_a["accuracy"] == metrics_f["accuracy"]


@pytest.mark.parametrize("method", list_strategies())
def test_every_method_picks_the_same_samples_from_files_as_from_arrays(
    method, both, stage0, tmp_path
):
    data, names = both
    picked, scores = {}, {}
    for storage, name in names.items():
        pool, models = stage0[storage]
        out = tmp_path / storage / "labeled.parquet"
        run_query(
            experiment(name, [method]), method, 0, 0, pool,
            models[strategy_class(method).recipe.name], data, out,
            tmp_path / storage / "scores.parquet", device="cpu", log=QUIET,
        )  # fmt: skip
        picked[storage] = read_labeled(out).table
        scores[storage] = pd.read_parquet(out.with_name("scores.parquet"))
    assert picked["files"].equals(picked["arrays"])
    assert scores["files"].equals(scores["arrays"])
    assert len(picked["files"]) == 6 + 3
    if method == "entropy":  # the scores decide, not ties broken by index
        assert scores["files"]["score"].nunique() == len(scores["files"]) == 12


# -------------------------------------------------------------------------------- ImageNet


def write_imagenet(root: Path, per_class: dict[str, tuple[int, int]]) -> Path:
    """A tiny tree of ImageNet's layout: ``train/<wnid>/<wnid>_<n>.JPEG`` and
    ``val/<wnid>/ILSVRC2012_val_<n>.JPEG``, RGB and grey-scale JPEGs of odd sizes."""
    rng = np.random.default_rng(0)
    number = 0
    for wnid, (n_train, n_val) in per_class.items():
        for split, count in (("train", n_train), ("val", n_val)):
            folder = root / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                number += 1
                h, w = (int(v) for v in rng.integers(230, 300, size=2))
                pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
                image = Image.fromarray(pixels).convert("L" if number % 5 == 0 else "RGB")
                name = f"ILSVRC2012_val_{number:08d}.JPEG"
                if split == "train":
                    name = f"{wnid}_{i + 1}.JPEG"
                image.save(folder / name, format="JPEG", quality=85)
    return root


WNIDS = {"n01440764": (5, 2), "n01443537": (4, 1), "n01484850": (3, 2)}


def test_imagenet_is_read_in_place_held_out_and_stored_as_files(tmp_path, monkeypatch):
    source = write_imagenet(tmp_path / "ILSVRC", WNIDS)
    counts = imagenet.ImageNetCounts(classes=3, train_images=12, val_images=5, held_out=3)
    monkeypatch.setattr(imagenet, "EXPECTED", counts)
    data = tmp_path / "data"
    prepare_dataset("imagenet", data, raw_sources={"imagenet": source}, log=QUIET)
    ds = load_dataset("imagenet", data)
    assert isinstance(ds.x_train, ImageFiles) and ds.x_train.shape == (9, 224, 224, 3)
    assert ds.info.classes == tuple(WNIDS) and ds.info.input_shape == (3, 224, 224)
    assert (ds.info.n_train, ds.info.n_test) == (9, 5)
    listed = json.loads((data / "imagenet" / "files.json").read_text())
    assert len(listed["held_out"]) == 3 and not set(listed["held_out"]) & set(listed["train"])
    # Stratified: 3 of 12 held out is one per class (5, 4 and 3 images; largest remainders).
    held_classes = sorted(path.split("/")[1] for path in listed["held_out"])
    assert held_classes == sorted(WNIDS)
    assert listed["test"][0] == "val/n01440764/ILSVRC2012_val_00000006.JPEG"
    assert ds.y_test.tolist() == [0, 0, 1, 2, 2]
    first = listed["train"][0]
    np.testing.assert_array_equal(ds.x_train[0], load_image(source / first, 224))
    assert ds.y_train[0] == list(WNIDS).index(first.split("/")[1])


def test_imagenet_with_other_counts_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    source = write_imagenet(tmp_path / "ILSVRC", WNIDS)
    data = tmp_path / "data"
    with pytest.raises(DatasetError, match=r"holds 12 train images in 3 class folders and 5 val"):
        prepare_dataset("imagenet", data, raw_sources={"imagenet": source}, log=QUIET)
    assert not (data / "imagenet").exists()
    flat = tmp_path / "flat"
    (flat / "train" / "n01440764").mkdir(parents=True)
    (flat / "val").mkdir()
    Image.new("RGB", (8, 8)).save(flat / "train" / "n01440764" / "n01440764_1.JPEG")
    Image.new("RGB", (8, 8)).save(flat / "val" / "ILSVRC2012_val_00000001.JPEG")
    monkeypatch.setattr(imagenet, "EXPECTED", dataclasses.replace(imagenet.EXPECTED, classes=1))
    with pytest.raises(DatasetError, match=r"val has no class folders"):
        prepare_dataset("imagenet", data, raw_sources={"imagenet": flat}, log=QUIET)
    with pytest.raises(DatasetError, match=r"must hold train/<wnid>/\*\.JPEG"):
        prepare_dataset("imagenet", data, raw_sources={"imagenet": tmp_path}, log=QUIET)
