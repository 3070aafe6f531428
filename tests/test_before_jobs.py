"""Issue 23: what can be known before any job is checked before any job.

A model that cannot take the dataset's samples, a raw_sources folder without the files, an
image that does not decode, an image folder changed since it was prepared while finished results
use it, and a second run writing the same results_dir are each refused when the workflow is
parsed (or starts), with one error naming what is wrong and what to do, and no job runs.
Library checks first; then Snakemake runs as tests/test_workflow.py drives it.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_workflow import _fill_labels_from_truth, snakemake, workdir_with_config

from tavaal.config import ExperimentConfig
from tavaal.data import check_raw_sources, declare_image_folders, prepare_dataset
from tavaal.data.image_folder import check_unread_images, folder_state
from tavaal.data.toy_folder import TOY_CLASSES, write_toy_folder
from tavaal.errors import ConfigError, DatasetError
from tavaal.results_guard import (
    RUN_LOCK,
    check_image_folders,
    release_results_lock,
    take_results_lock,
)
from tavaal.validation import check_experiment

CLASSES = list(TOY_CLASSES)
QUIET = lambda line: None  # noqa: E731


def moons(model: str, methods: list[str]) -> ExperimentConfig:
    settings = {"dataset": "moons", "model": model, "methods": methods, "seeds": [0]}
    return ExperimentConfig.from_dict("m", {**settings, "initial_size": 20, "budget": 10})


def toy_entry(folder, **changes) -> dict:
    return {
        "path": str(folder.images),
        "classes": CLASSES,
        "test_labels": str(folder.test_labels),
        **changes,
    }


def write_bad_images(images: Path) -> list[str]:
    """A zero-byte JPEG, a truncated JPEG and a .png holding text: paths relative to `images`."""
    good_jpeg = next(p for p in sorted(images.rglob("*.jpg")))
    data = good_jpeg.read_bytes()
    (images / "empty.jpg").write_bytes(b"")
    (images / "batch_a" / "cut.jpg").write_bytes(data[: len(data) // 2])
    (images / "notes.png").write_text("not an image\n")
    return ["batch_a/cut.jpg", "empty.jpg", "notes.png"]


# ----------------------------------------------------------------------- library checks


def test_a_model_that_cannot_take_the_samples_is_refused_by_the_experiment_check():
    """small_cnn needs images; two moons are points: found when the experiment is checked (it
    was found by the stage-0 training job, after the pool jobs ran)."""
    check_experiment(moons("mlp", ["random", "tavaal"]))
    with pytest.raises(ConfigError) as error:
        check_experiment(moons("small_cnn", ["random", "tavaal"]))
    message = str(error.value)
    assert message.startswith("experiments.m.model: small_cnn cannot serve moons")
    assert "whose samples have shape (2,)" in message
    assert "needs an image input_shape (C, H, W)" in message


def test_a_raw_sources_folder_is_checked_before_it_is_read(tmp_path):
    data = tmp_path / "data"
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError, match=rf"raw_sources\.cifar10: {missing} does not exist"):
        check_raw_sources(["cifar10_imb10"], data, {"cifar10": missing})
    empty = tmp_path / "empty"
    (empty / "cifar-10-batches-py").mkdir(parents=True)
    (empty / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"x")
    with pytest.raises(DatasetError) as error:
        check_raw_sources(["cifar10"], data, {"cifar10": empty})
    message = str(error.value)
    assert f"raw_sources.cifar10: {empty / 'cifar-10-batches-py'} lacks data_batch_2" in message
    assert "data_batch_5, test_batch, batches.meta" in message
    assert "data_batch_1," not in message
    # Sources no listed dataset reads, and datasets already prepared, need no raw folder.
    check_raw_sources(["moons", "svhn"], data, {"cifar10": missing})
    (data / "cifar10").mkdir(parents=True)
    check_raw_sources(["cifar10"], data, {"cifar10": missing})


def test_every_unreadable_image_is_named_in_one_error(tmp_path):
    folder = write_toy_folder(tmp_path / "toy", pool_per_class=3, test_per_class=1, seed=2)
    (spec,) = declare_image_folders({"bad_toy": toy_entry(folder)}).values()
    check_unread_images(folder_state(spec, tmp_path / "data"))
    bad = write_bad_images(folder.images)
    (spec,) = declare_image_folders({"bad_toy": toy_entry(folder)}).values()
    with pytest.raises(DatasetError) as error:
        check_unread_images(folder_state(spec, tmp_path / "data"))
    message = str(error.value)
    assert message.startswith(f"image_folders.bad_toy: 3 images in {folder.images} cannot be read")
    for path in bad:
        assert f"{path} (" in message
    assert "Remove them from the folder" in message
    assert (
        "empty.jpg (an empty file)" in message
        and "batch_a/cut.jpg (image file is truncated" in message
    )
    # Read from their files (too many to decode twice), images are opened: what has no image
    # header is found before any job, a truncated image when it is read.
    (spec,) = declare_image_folders({"bad_toy": toy_entry(folder, storage="files")}).values()
    with pytest.raises(DatasetError, match="2 images in .* cannot be read") as error:
        check_unread_images(folder_state(spec, tmp_path / "data"))
    assert "empty.jpg (" in str(error.value) and "notes.png (" in str(error.value)


@pytest.fixture
def prepared_toy(tmp_path):
    folder = write_toy_folder(tmp_path / "toy", pool_per_class=3, test_per_class=1, seed=4)
    (spec,) = declare_image_folders({"listed": toy_entry(folder)}).values()
    data = tmp_path / "data"
    unprepared = folder_state(spec, data)
    assert not unprepared.is_prepared and unprepared.change is None
    assert len(unprepared.unread) == 12
    prepare_dataset("listed", data, log=QUIET)
    # The prepare job's param is the same before and after it ran: the next run reruns nothing.
    assert folder_state(spec, data).prepare_params() == unprepared.prepare_params()
    return folder, spec, data


def test_a_prepared_folder_records_its_listing_and_finds_what_changed(prepared_toy):
    folder, spec, data = prepared_toy
    files = json.loads((data / "listed" / "files.json").read_text())
    listing = files["listing"]
    assert sorted(listing) == sorted(files["train"] + files["test"])
    first = sorted(listing)[0]
    size, mtime, sha = listing[first]
    path = folder.images / first
    assert (size, mtime) == (path.stat().st_size, path.stat().st_mtime_ns)
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest()
    assert set(files["label_files"]) == {"test_labels"}

    state = folder_state(spec, data)
    assert state.is_prepared and not state.change and not state.prepares_again
    assert state.unread == () and state.entry_changes == ()
    digest = state.prepare_params()["listing"]
    # A new modification time with the same contents (a copy, a touch) is no change.
    os.utime(path, ns=(mtime + 10**9, mtime + 10**9))
    touched = folder_state(spec, data)
    assert not touched.change and touched.prepare_params()["listing"] == digest

    pool = sorted(files["train"])
    (folder.images / pool[0]).unlink()
    changed = folder.images / pool[1]
    changed.write_bytes(changed.read_bytes() + b"\0")
    added = folder.images / "batch_a" / "new.jpg"
    added.write_bytes((folder.images / first).read_bytes())
    (spec,) = declare_image_folders({"listed": toy_entry(folder, image_size=48)}).values()
    state = folder_state(spec, data)
    assert state.change.added == ("batch_a/new.jpg",)
    assert state.change.removed == (pool[0],)
    assert state.change.changed == (pool[1],)
    assert state.entry_changes == ("image_size",) and state.prepares_again
    assert set(state.unread) == {"batch_a/new.jpg", pool[1]}
    assert state.prepare_params()["listing"] != digest
    assert state.prepare_params()["image_size"] == 48
    described = state.describe()
    assert f"1 image added (batch_a/new.jpg); 1 image removed ({pool[0]})" in described
    assert "entry changed since then (image_size)" in described


def test_an_edited_test_labels_csv_is_a_change_of_the_folder(prepared_toy):
    folder, spec, data = prepared_toy
    lines = folder.test_labels.read_text().splitlines()
    folder.test_labels.write_text("\n".join(lines[:-1]) + "\n")
    state = folder_state(spec, data)
    assert state.change.label_files == ("test_labels",) and state.prepares_again
    assert "the test_labels CSV changed" in state.describe()


def test_a_changed_folder_is_refused_while_finished_results_use_it(prepared_toy, tmp_path):
    folder, spec, data = prepared_toy
    (folder.images / "batch_a" / "new.png").write_bytes(
        next(folder.images.rglob("*.png")).read_bytes()
    )
    states = {"listed": folder_state(spec, data)}
    results = tmp_path / "results"
    datasets = {"trial": "listed", "other": "moons"}
    # Nothing finished yet: preparing again replaces nothing.
    check_image_folders(results, states, datasets)
    request = results / "trial" / "stage0" / "seed0" / "to_label.csv"
    request.parent.mkdir(parents=True)
    request.write_text("sample_id,path\n")
    with pytest.raises(ConfigError) as error:
        check_image_folders(results, states, datasets)
    message = str(error.value)
    assert message.startswith(
        f"image_folders.listed: {folder.images} changed since it was prepared: 1 image added "
        "(batch_a/new.png)"
    )
    assert f"experiment trial ({request.parent.as_posix()})" in message
    assert "other" not in message.replace("another", "")
    assert "--config 'replace_results=[\"trial\"]'" in message
    check_image_folders(results, states, datasets, replace=["trial"])


def test_one_run_at_a_time_per_results_dir(tmp_path):
    results = tmp_path / "results"
    lock = take_results_lock(results)
    assert lock == results / RUN_LOCK
    holder = json.loads(lock.read_text())
    assert (holder["pid"], holder["host"]) == (os.getpid(), socket.gethostname())
    # Another process sees the lock held by a running process (this one) and is refused.
    code = (
        "import sys\nfrom tavaal.results_guard import take_results_lock\n"
        "from tavaal.errors import ConfigError\n"
        f"try:\n    take_results_lock({str(results)!r})\n"
        "except ConfigError as exc:\n    print(exc)\n    sys.exit(3)\n"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert other.returncode == 3, other.stderr
    assert other.stdout.startswith(f"{lock}: another run (pid {os.getpid()} on host ")
    release_results_lock(results)
    assert not lock.exists()
    # A lock left by a process that has ended on this host is taken over; another host's is not.
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], text=True, capture_output=True
    )
    stale = {"pid": int(dead.stdout), "host": socket.gethostname(), "started": "x", "workdir": "w"}
    lock.write_text(json.dumps(stale))
    take_results_lock(results)
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    release_results_lock(results)
    lock.write_text(json.dumps({**stale, "host": "elsewhere.example"}))
    with pytest.raises(ConfigError, match="on host elsewhere.example"):
        take_results_lock(results)
    release_results_lock(results)  # not ours: left in place
    assert lock.exists()


# ------------------------------------------------------------------------- the workflow


def run_workflow(work: Path, extra: dict, *args: str, check: bool = False):
    workdir_with_config(work, extra)
    config = ("--configfile", str(work / "config.yaml"), str(work / "extra.yaml"))
    return snakemake(work, "all", "--cores", "1", *config, *args, check=check)


def no_job_ran(work: Path) -> bool:
    return not any((work / name).exists() for name in ("results", "data", "logs"))


MOONS = {
    "dataset": "moons",
    "model": "mlp",
    "methods": ["random"],
    "seeds": [0],
    "initial_size": 20,
    "budget": 10,
    "stages": 2,
    "subset_size": 0,
    "train": {"epochs": 1, "batch_size": 16, "milestones": []},
}


def bad_image_folder(work: Path) -> dict:
    folder = write_toy_folder(work / "toy", pool_per_class=3, test_per_class=1, seed=2)
    write_bad_images(folder.images)
    shapes = {**MOONS, "dataset": "shapes", "model": "small_cnn", "initial_size": 3, "budget": 2}
    return {
        "run_experiments": ["shapes"],
        "image_folders": {"shapes": {"path": "toy/images", "classes": CLASSES, "labels": None}},
        "experiments": {"shapes": {**shapes, "oracle": {"kind": "human"}}},
    }


@pytest.mark.parametrize(
    ("case", "said"),
    [
        ("model", "experiments.m.model: small_cnn cannot serve moons"),
        ("raw_sources", "raw_sources.cifar10: {work}/nowhere does not exist"),
        ("images", "image_folders.shapes: 3 images in toy/images cannot be read"),
    ],
)
def test_bad_inputs_stop_the_workflow_before_any_job(tmp_path, case, said):
    work = tmp_path / case
    work.mkdir()
    if case == "model":
        extra = {
            "run_experiments": ["m"],
            "experiments": {"m": {**MOONS, "model": "small_cnn", "methods": ["tavaal"]}},
        }
    elif case == "raw_sources":
        cifar = {**MOONS, "dataset": "cifar10", "model": "resnet18"}
        extra = {
            "run_experiments": ["c"],
            "raw_sources": {"cifar10": str(work / "nowhere")},
            "experiments": {"c": cifar},
        }
    else:
        extra = bad_image_folder(work)
    result = run_workflow(work, extra)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert said.format(work=work) in output, output[-3000:]
    if case == "images":
        for path in ("batch_a/cut.jpg", "empty.jpg", "notes.png"):
            assert f"{path} (" in output
    assert no_job_ran(work)


def test_a_second_run_on_the_same_results_dir_is_refused(tmp_path):
    """The lock is held by a running process (this test's): a run started from another working
    folder, sharing the results_dir, stops before its first job and names the holder."""
    shared = tmp_path / "shared_results"
    lock = take_results_lock(shared)
    try:
        extra = {"run_experiments": ["m"], "results_dir": str(shared), "experiments": {"m": MOONS}}
        result = run_workflow(tmp_path / "second", extra)
    finally:
        release_results_lock(shared)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"{lock}: another run (pid {os.getpid()} on host {socket.gethostname()}" in output
    assert sorted(p.name for p in shared.iterdir()) == []
    assert not (tmp_path / "second" / "data").exists()


def file_hashes(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and ".snakemake" not in path.parts
    }


@pytest.mark.slow
def test_a_changed_image_folder_never_destroys_finished_stages(tmp_path):
    """The issue's reproduction: two labeled stages, then an image added to the folder and the
    entry's image_size changed. The run stops before any job naming the added image, the
    changed key and the runs it would replace, and every file stays byte-identical; with the
    folder and entry restored there is nothing to do."""
    work = tmp_path / "work"
    folder = write_toy_folder(work / "toy", pool_per_class=4, test_per_class=1, seed=1)
    entry = {"path": "toy/images", "classes": CLASSES, "test_labels": "toy/test_labels.csv"}
    shapes = {**MOONS, "dataset": "shapes", "model": "small_cnn", "initial_size": 4, "budget": 3}
    extra = {
        "run_experiments": ["shapes"],
        "image_folders": {"shapes": entry},
        "experiments": {"shapes": {**shapes, "methods": ["entropy"], "oracle": {"kind": "human"}}},
    }
    for _ in range(3):  # request stage 0; take it, train, request stage 1; take stage 1, train
        run_workflow(work, extra, check=True)
        _fill_labels_from_truth(work, folder.truth, "toy/images")
    metrics = work / "results/shapes/entropy/seed0/stage1/metrics.json"
    assert metrics.exists()
    before = file_hashes(work)

    added = folder.images / "batch_a" / "img_late.jpg"
    added.write_bytes(next(folder.images.rglob("*.jpg")).read_bytes())
    changed = {**extra, "image_folders": {"shapes": {**entry, "image_size": 48}}}
    result = run_workflow(work, changed)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert (
        "image_folders.shapes: toy/images changed since it was prepared: 1 image added "
        "(batch_a/img_late.jpg); the image_folders.shapes entry changed since then (image_size)"
    ) in output
    assert "results/shapes/stage0/seed0" in output and 'replace_results=["shapes"]' in output
    after = file_hashes(work)
    assert after.pop("toy/images/batch_a/img_late.jpg")
    assert after.pop("extra.yaml") and before.pop("extra.yaml")
    assert after == before

    added.unlink()
    (work / "extra.yaml").write_text(yaml.safe_dump(extra, sort_keys=False))
    restored = snakemake(
        work, "all", "-n", "--configfile", str(work / "config.yaml"), str(work / "extra.yaml")
    )
    assert "Nothing to be done" in restored.stdout + restored.stderr
