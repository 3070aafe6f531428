"""Practitioner mode: a person's image folder, the human oracle's requests and labels files.

Library tests here; the three-stage Snakemake run with a script playing the human is in
tests/test_workflow.py (slow). The labeling page itself: tests/test_labeling.py.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tavaal.config import ExperimentConfig
from tavaal.data import declare_image_folders, load_dataset, prepare_dataset
from tavaal.data.image_folder import list_images, load_image, read_files
from tavaal.data.toy_folder import TOY_CLASSES, write_toy_folder
from tavaal.errors import ConfigError, DatasetError, LabelingError
from tavaal.labeling.request import read_answers, read_request, require_complete, write_request
from tavaal.layout import labels_file, request_folder, run_file
from tavaal.pool import read_labeled
from tavaal.practitioner import (
    label_progress,
    run_export,
    run_initial_labels,
    run_initial_request,
    run_query_request,
    run_take_labels,
)
from tavaal.stage import run_query, run_train
from tavaal.strategies import list_strategies, strategy_class
from tavaal.validation import check_experiment

CLASSES = list(TOY_CLASSES)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A toy folder with 8 pool and 2 test images per class, prepared with and without the
    pool's labels (same images, same sample ids)."""
    root = tmp_path_factory.mktemp("toy")
    folder = write_toy_folder(root, pool_per_class=8, test_per_class=2, seed=3)
    declare_image_folders(
        {
            "toy_unknown": {
                "path": str(folder.images),
                "classes": CLASSES,
                "test_labels": str(folder.test_labels),
            },
            "toy_known": {
                "path": str(folder.images),
                "classes": CLASSES,
                "test_labels": str(folder.test_labels),
                "labels": str(folder.truth),
            },
        }
    )
    data = root / "data"
    for name in ("toy_unknown", "toy_known"):
        prepare_dataset(name, data, log=lambda line: None)
    return folder, data


def truth_of(folder) -> dict[str, str]:
    with folder.truth.open() as handle:
        return {row["path"]: row["label"] for row in csv.DictReader(handle)}


def play_the_human(request_dir: Path, folder, edit=None) -> Path:
    """Fill the request's labels file from the hidden true labels (`edit` may change rows)."""
    request = read_request(request_dir)
    truth = truth_of(folder)
    rows = [
        [s.sample_id, s.path, truth[Path(s.path).relative_to(folder.images).as_posix()]]
        for s in request.samples
    ]
    if edit is not None:
        rows = edit(rows)
    request.labels_file.parent.mkdir(parents=True, exist_ok=True)
    with request.labels_file.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sample_id", "path", "label"])
        writer.writerows(rows)
    return request.labels_file


# ------------------------------------------------------------------------ the image folder


def test_image_folder_numbers_nested_images_by_path_and_keeps_their_labels(toy):
    folder, data = toy
    unknown, known = load_dataset("toy_unknown", data), load_dataset("toy_known", data)
    files = read_files(data / "toy_unknown")
    truth = truth_of(folder)
    with folder.test_labels.open() as handle:
        test = {row["path"]: row["label"] for row in csv.DictReader(handle)}
    # Every image below the folder (nested, .jpg and .png) is a sample, by sorted path.
    assert files["train"] == sorted(truth) and files["test"] == sorted(test)
    assert any("/" in p.split("batch_b/", 1)[-1] for p in files["train"])
    assert {Path(p).suffix for p in files["train"]} == {".jpg", ".png"}
    assert unknown.x_train.shape == (24, 32, 32, 3) and unknown.x_test.shape == (6, 32, 32, 3)
    np.testing.assert_array_equal(unknown.x_train, known.x_train)
    assert (unknown.y_train == -1).all() and not unknown.info.train_labels_known
    expected = [CLASSES.index(truth[p]) for p in files["train"]]
    np.testing.assert_array_equal(known.y_train, expected)
    np.testing.assert_array_equal(unknown.y_test, [CLASSES.index(test[p]) for p in files["test"]])


def test_an_image_is_scaled_by_its_shorter_side_and_centre_cropped(tmp_path):
    # 60 x 20: red left third, green middle, blue right third; the crop keeps the middle.
    pixels = np.zeros((20, 60, 3), dtype=np.uint8)
    pixels[:, :20, 0] = pixels[:, 20:40, 1] = pixels[:, 40:, 2] = 255
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    out = load_image(tmp_path / "wide.png", 8)
    assert out.shape == (8, 8, 3)
    assert (out[:, :, 1] > 200).all() and (out[:, :, 0] < 60).all() and (out[:, :, 2] < 60).all()


def test_image_folder_entries_and_labels_are_checked(tmp_path, toy):
    folder, data = toy
    with pytest.raises(ConfigError, match=r"image_folders\.bad\.classes"):
        declare_image_folders({"bad": {"path": str(folder.images), "classes": ["only"]}})
    with pytest.raises(DatasetError, match="built-in dataset"):
        declare_image_folders({"digits": {"path": str(folder.images), "classes": CLASSES}})
    with pytest.raises(DatasetError, match="does not exist"):
        declare_image_folders({"gone": {"path": str(tmp_path / "nothing"), "classes": CLASSES}})
    bad = tmp_path / "bad_test.csv"
    first = list_images(folder.images)[0]
    bad.write_text(f"path,label\n{first},circle\n{first},square\n")
    with pytest.raises(DatasetError, match=rf"{bad.name}, row 3: .* listed twice"):
        declare_image_folders(
            {"dup": {"path": str(folder.images), "classes": CLASSES, "test_labels": str(bad)}}
        )
    bad.write_text(f"path,label\n{first},hexagon\n")
    with pytest.raises(DatasetError, match=r"row 2: unknown class 'hexagon'"):
        declare_image_folders(
            {"odd": {"path": str(folder.images), "classes": CLASSES, "test_labels": str(bad)}}
        )
    # A prepared folder is never silently reused for another entry.
    declare_image_folders(
        {"toy_unknown": {"path": str(folder.images), "classes": CLASSES, "image_size": 16}}
    )
    try:
        with pytest.raises(DatasetError, match="image_size.*differ|differ.*image_size"):
            prepare_dataset("toy_unknown", data)
    finally:
        declare_image_folders(
            {
                "toy_unknown": {
                    "path": str(folder.images),
                    "classes": CLASSES,
                    "test_labels": str(folder.test_labels),
                }
            }
        )


# ------------------------------------------------------------------- the human oracle


def experiment(name: str, dataset: str, methods=("random",), **changes) -> ExperimentConfig:
    settings = {
        "dataset": dataset,
        "model": "small_cnn",
        "methods": list(methods),
        "seeds": [0],
        "initial_size": 6,
        "budget": 4,
        "stages": 3,
        "subset_size": 0,
        "train": {"epochs": 1, "batch_size": 8, "milestones": [], "dropout": 0.3},
        "vae": {
            "latent_dim": 4,
            # VAAL's 128-channel convolutional VAE would take most of this file's time.
            "base_channels": 8,
            "hidden": 16,
            "disc_hidden": 16,
            "batch_size": 8,
            "epochs": 1,
            "iterations": 4,
        },
        "query": {"mc_samples": 3, "ensemble_size": 2, "inference_batch_size": 16},
        **changes,
    }
    return ExperimentConfig.from_dict(name, settings)


def human(tmp_path: Path, name: str = "h", dataset: str = "toy_unknown", **changes):
    oracle = {"kind": "human", "labels_dir": str(tmp_path / "labels"), **changes.pop("oracle", {})}
    return experiment(name, dataset, oracle=oracle, **changes)


def test_human_oracle_settings_are_checked(tmp_path, toy):
    with pytest.raises(ConfigError, match=r"oracle\.noise"):
        human(tmp_path, oracle={"noise": 0.1})
    with pytest.raises(ConfigError, match=r"train\.validation_size"):
        human(tmp_path, train={"validation_size": 5})
    with pytest.raises(ConfigError, match=r"initial_excluded_classes"):
        human(tmp_path, initial_excluded_classes=1)
    with pytest.raises(ConfigError, match=r"oracle\.kind: the human oracle labels"):
        check_experiment(human(tmp_path, dataset="digits"))
    with pytest.raises(ConfigError, match=r"oracle\.kind: the pool labels of .*toy_unknown"):
        check_experiment(experiment("s", "toy_unknown"))
    with pytest.raises(ConfigError, match=r"oracle\.initial_labels: .* does not exist"):
        check_experiment(human(tmp_path, oracle={"initial_labels": str(tmp_path / "no.csv")}))
    check_experiment(human(tmp_path))
    check_experiment(experiment("s", "toy_known"))


@pytest.fixture
def asked(tmp_path, toy):
    """The initial pool's request of a human-oracle experiment, not yet answered."""
    folder, data = toy
    exp = human(tmp_path)
    results = tmp_path / "results"
    where = request_folder(results, exp.name, "random", 0, 0)
    run_initial_request(exp, 0, data, where, log=lambda line: None)
    return exp, results, where, folder


def test_a_request_lists_the_drawn_pool_with_paths_and_a_contact_sheet(asked, toy):
    exp, results, where, folder = asked
    request = read_request(where)
    assert request.classes == TOY_CLASSES and len(request.samples) == 6
    assert request.labels_file == labels_file(exp.oracle.labels_dir, "h", "*", 0, 0)
    files = read_files(toy[1] / "toy_unknown")
    for sample in request.samples:
        assert sample.path == f"{folder.images.as_posix()}/{files['train'][sample.sample_id]}"
    with Image.open(where / "contact_sheet.png") as sheet:
        assert sheet.width > 6 * 100 and sheet.height > 100
    progress = label_progress(exp, results, "random", 0)
    assert progress.ready == 0 and progress.waiting_for == request.labels_file
    assert str(where) in progress.note and "tavaal label" in progress.note


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda rows: [*rows[:2], [rows[2][0], rows[2][1], "hexagon"], *rows[3:]],
            r"labels\.csv: row 3: unknown class 'hexagon' for sample \d+",
        ),
        (
            lambda rows: [*rows, [99999, "x.png", "circle"]],
            r"labels\.csv: row 7: sample 99999 was not asked for",
        ),
        (
            lambda rows: [*rows, rows[1]],
            r"labels\.csv: row 7: sample \d+ is listed twice \(also row 2\)",
        ),
        (
            lambda rows: [
                [r[0], "elsewhere.png", r[2]] if i == 3 else r for i, r in enumerate(rows)
            ],
            r"labels\.csv: row 4: sample \d+ has path 'elsewhere\.png'",
        ),
        (
            lambda rows: [[r[0], r[1], "x"] if i == 0 else r for i, r in enumerate(rows)],
            r"labels\.csv: row 1: unknown class 'x'",
        ),
    ],
)
def test_a_bad_labels_file_is_refused_naming_file_and_row(asked, edit, message):
    exp, results, where, folder = asked
    target = play_the_human(where, folder, edit)
    before = target.read_bytes()
    with pytest.raises(LabelingError, match=message):
        label_progress(exp, results, "random", 0)
    with pytest.raises(LabelingError, match=message):
        run_take_labels(exp, 0, 0, None, where, results / "pool.parquet")
    assert target.read_bytes() == before and not (results / "pool.parquet").exists()


def test_a_partly_filled_labels_file_is_not_an_answer(asked):
    exp, results, where, folder = asked
    play_the_human(
        where, folder, lambda rows: [[*r[:2], ""] if i in (1, 4) else r for i, r in enumerate(rows)]
    )
    progress = label_progress(exp, results, "random", 0)
    assert progress.ready == 0 and "2 of 6 samples still have no label" in progress.note
    with pytest.raises(
        LabelingError, match=r"2 of 6 samples have no label yet \(first: sample \d+, row 2"
    ):
        run_take_labels(exp, 0, 0, None, where, results / "pool.parquet")
    # A row left out entirely counts as missing too.
    play_the_human(where, folder, lambda rows: rows[:5])
    assert read_answers(read_request(where)).missing[0].row == 6


def test_a_label_changed_after_its_stage_was_built_is_refused(asked):
    exp, results, where, folder = asked
    target = play_the_human(where, folder)
    pool = run_file(results, exp.name, "random", 0, 0, "labeled.parquet")
    run_take_labels(exp, 0, 0, None, where, pool)
    assert label_progress(exp, results, "random", 0).ready == 1
    # Saving the same labels in another row order changes nothing.
    rows = target.read_text().splitlines()
    target.write_text("\n".join([rows[0], *reversed(rows[1:])]) + "\n")
    assert label_progress(exp, results, "random", 0).ready == 1
    lines = target.read_text().splitlines()
    sample, path, label = lines[2].split(",")
    other = next(c for c in CLASSES if c != label)
    lines[2] = f"{sample},{path},{other}"
    target.write_text("\n".join(lines) + "\n")
    with pytest.raises(
        LabelingError,
        match=rf"sample {sample} .* now says '{other}', but .*"
        rf"labeled\.parquet and every later stage were built when it said '{label}'",
    ):
        label_progress(exp, results, "random", 0)
    assert read_labeled(pool).metadata["labels_sha256"] != ""


def test_initial_labels_at_hand_are_the_initial_pool(tmp_path, toy):
    folder, data = toy
    truth = truth_of(folder)
    given = tmp_path / "have.csv"
    chosen = sorted(truth)[:6]
    given.write_text("path,label\n" + "".join(f"{p},{truth[p]}\n" for p in chosen))
    exp = human(tmp_path, oracle={"initial_labels": str(given)})
    pool = tmp_path / "pool.parquet"
    run_initial_labels(exp, 0, data, given, pool, log=lambda line: None)
    table = read_labeled(pool).table
    files = read_files(data / "toy_unknown")["train"]
    assert sorted(files[i] for i in table["index"]) == chosen
    assert [CLASSES[v] for v in table["label"]] == [truth[files[i]] for i in table["index"]]
    assert label_progress(exp, tmp_path / "results", "random", 0).ready == 1
    given.write_text("path,label\n" + "".join(f"{p},{truth[p]}\n" for p in chosen[:5]))
    with pytest.raises(LabelingError, match="5 labeled images, but .*initial_size is 6"):
        run_initial_labels(exp, 0, data, given, pool)


# ------------------------------------------- every method, with either oracle, same picks


@pytest.fixture(scope="module")
def stage0_models(toy, tmp_path_factory):
    """Stage 0 of the simulated experiment, trained once per recipe; the human experiment on
    the same images gets the same pool (checked below), so the same model."""
    folder, data = toy
    root = tmp_path_factory.mktemp("stage0")
    exp = experiment("sim", "toy_known", methods=list_strategies())
    from tavaal.stage import run_init_pool

    pool = run_file(root, "sim", "random", 0, 0, "labeled.parquet")
    run_init_pool(exp, 0, data, pool, log=lambda line: None)
    models = {}
    for method in list_strategies():
        recipe = strategy_class(method).recipe
        model = run_file(root, "sim", method, 0, 0, "model.pt")
        if recipe.name not in models:
            run_train(
                exp,
                recipe,
                0,
                0,
                pool,
                data,
                model,
                model.with_name("metrics.json"),
                device="cpu",
                log=lambda line: None,
            )
            models[recipe.name] = model
    return root, pool, models


@pytest.mark.parametrize("method", list_strategies())
def test_every_method_asks_the_person_for_what_it_would_ask_the_simulated_oracle(
    method, tmp_path, toy, stage0_models
):
    folder, data = toy
    root, sim_pool, models = stage0_models
    model = models[strategy_class(method).recipe.name]
    quiet = lambda line: None  # noqa: E731
    sim = experiment("sim", "toy_known", methods=[method])
    sim_next = tmp_path / "sim" / "labeled.parquet"
    run_query(
        sim,
        method,
        0,
        0,
        sim_pool,
        model,
        data,
        sim_next,
        tmp_path / "sim" / "scores.parquet",
        device="cpu",
        log=quiet,
    )
    # The human experiment on the same images, labels unknown to tavaal: the person's pool.
    exp = human(tmp_path, dataset="toy_known", methods=[method])
    results = tmp_path / "results"
    start = request_folder(results, "h", method, 0, 0)
    run_initial_request(exp, 0, data, start, log=quiet)
    play_the_human(start, folder)
    pool = run_file(results, "h", method, 0, 0, "labeled.parquet")
    run_take_labels(exp, 0, 0, None, start, pool, log=quiet)
    assert read_labeled(pool).table.equals(read_labeled(sim_pool).table)
    asked = request_folder(results, "h", method, 0, 1)
    scores = tmp_path / "h_scores.parquet"
    run_query_request(exp, method, 0, 0, pool, model, data, scores, asked, device="cpu", log=quiet)
    assert label_progress(exp, results, method, 0).ready == 1
    play_the_human(asked, folder)
    after = run_file(results, "h", method, 0, 1, "labeled.parquet")
    run_take_labels(exp, 0, 1, method, asked, after, previous=pool, scores=scores, log=quiet)
    mine, theirs = read_labeled(after), read_labeled(sim_next)
    assert mine.table.equals(theirs.table)
    assert (mine.metadata["oracle"], theirs.metadata["oracle"]) == ("human", "simulated")
    assert label_progress(exp, results, method, 0).ready == 2


def test_export_lists_path_label_stage_and_score_and_copies_the_model(tmp_path, toy, stage0_models):
    folder, data = toy
    root, sim_pool, models = stage0_models
    exp = experiment("sim", "toy_known", methods=["entropy"])
    labeled, scores = tmp_path / "labeled.parquet", tmp_path / "scores.parquet"
    run_query(
        exp,
        "entropy",
        0,
        0,
        sim_pool,
        models["plain"],
        data,
        labeled,
        scores,
        device="cpu",
        log=lambda line: None,
    )
    export = tmp_path / "export"
    run_export(exp, "entropy", 0, 1, labeled, models["plain"], data, export, log=lambda line: None)
    with (export / "labeled.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    table = read_labeled(labeled).table
    files = read_files(data / "toy_known")
    assert len(rows) == len(table) == 10
    assert [int(r["stage"]) for r in rows] == [0] * 6 + [1] * 4
    truth = truth_of(folder)
    for row in rows:
        relative = Path(row["path"]).relative_to(folder.images).as_posix()
        assert relative == files["train"][int(row["sample_id"])]
        assert row["label"] == truth[relative]
        picked = table.set_index("index").loc[int(row["sample_id"])]
        assert (row["score"] == "") == (int(row["stage"]) == 0)
        if row["score"]:
            assert float(row["score"]) == picked["score"]
    assert (export / "model.pt").read_bytes() == models["plain"].read_bytes()


def test_write_request_makes_the_files_the_page_reads(tmp_path, toy):
    folder, data = toy
    paths = [str(p) for p in sorted(folder.images.rglob("*.png"))[:3]]
    write_request(
        tmp_path / "req",
        [5, 1, 9],
        paths,
        CLASSES,
        tmp_path / "labels.csv",
        {"experiment": "e", "method": "m", "seed": 0, "stage": 2},
    )
    request = read_request(tmp_path / "req" / "to_label.csv")
    assert [s.sample_id for s in request.samples] == [5, 1, 9]
    assert json.loads((tmp_path / "req" / "label_request.json").read_text())["stage"] == 2
    text = (tmp_path / "req" / "to_label.csv").read_text()
    assert re.fullmatch(r"sample_id,path,label\n(\d+,[^,]+,\n){3}", text)
    with pytest.raises(LabelingError, match="labels.csv: not found"):
        read_answers(request)
    request.labels_file.write_text(text.replace(",\n", ",circle\n"))
    answers = read_answers(request)
    require_complete(answers, request)
    assert answers.labels == {5: 0, 1: 0, 9: 0}


def test_the_command_line_knows_image_folders_and_leaves_people_to_the_workflow(
    tmp_path, toy, capsys
):
    import yaml

    from tavaal import cli

    folder, data = toy
    entry = {"path": str(folder.images), "classes": CLASSES, "test_labels": str(folder.test_labels)}
    settings = experiment("x", "mine").to_dict()
    config = {
        "image_folders": {"mine": entry},
        "experiments": {"x": {**settings, "oracle": {"kind": "human"}}},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert cli.main(["estimate", str(path)]) == 0
    assert re.search(r"^x  5  ", capsys.readouterr().out, re.MULTILINE)
    code = cli.main(
        [
            "run",
            "--config",
            str(path),
            "--data-dir",
            str(data),
            "--results-dir",
            str(tmp_path / "r"),
        ]
    )
    assert code == 2
    assert "oracle.kind: a person labels this experiment through the workflow" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "r").exists()


def test_vaal_trains_its_vae_on_the_downsampled_copy(tmp_path, toy, stage0_models, monkeypatch):
    """vae.input_size (issue 12): the 32 px images reach the VAE and D at 16 px."""
    from tavaal.adversarial import training

    folder, data = toy
    root, sim_pool, models = stage0_models
    built = []
    original = training.build_adversary

    def recording(input_shape, *args, **kwargs):
        built.append(tuple(input_shape))
        return original(input_shape, *args, **kwargs)

    monkeypatch.setattr(training, "build_adversary", recording)
    base = experiment("sim", "toy_known", methods=["vaal"]).to_dict()
    exp = ExperimentConfig.from_dict("sim", {**base, "vae": {**base["vae"], "input_size": 16}})
    labeled = tmp_path / "labeled.parquet"
    run_query(
        exp,
        "vaal",
        0,
        0,
        sim_pool,
        None,
        data,
        labeled,
        tmp_path / "scores.parquet",
        device="cpu",
        log=lambda line: None,
    )
    assert built == [(3, 16, 16)]
    added = read_labeled(labeled).table.query("stage_added == 1")
    assert len(added) == 4 and added["index"].is_unique
