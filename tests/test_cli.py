"""End to end through the CLI: two stages of every method on digits, index-file invariants."""

import subprocess
import sys

import numpy as np
import pytest
import yaml
from expected_results import check_against_expected

from tavaal.cli import main
from tavaal.config_schema import schema_text
from tavaal.data import load_dataset
from tavaal.layout import ALL_METHODS, run_file
from tavaal.pool import read_labeled, read_scores
from tavaal.strategies import list_strategies, strategy_class

BUDGET = 20
INITIAL = 40

CONFIG = {
    "experiments": {
        "tiny": {
            "dataset": "digits",
            "model": "digits_cnn",
            "methods": list_strategies(),
            "seeds": [0],
            "initial_size": INITIAL,
            "budget": BUDGET,
            "stages": 2,
            "subset_size": 200,
            "train": {
                "epochs": 2,
                "batch_size": 32,
                "lr": 0.05,
                "milestones": [],
                "augment": False,
                "dropout": 0.3,
            },
            "ranker": {"detach_epoch": 1, "hidden": 16},
            "vae": {
                "latent_dim": 8,
                "base_channels": 8,
                "iterations": 10,
                "batch_size": 16,
                "disc_hidden": 32,
                "init": "kaiming",  # as the committed fingerprints were made
            },
            "query": {"mc_samples": 3, "ensemble_size": 2},
        }
    }
}


def run_all(root, data_dir):
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    code = main(
        [
            "run",
            "--config",
            str(config),
            "--results-dir",
            str(root / "results"),
            "--data-dir",
            str(data_dir),
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    return root / "results"


def path(results, method, stage, name):
    return run_file(results, "tiny", method, 0, stage, name)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("data")
    first = run_all(tmp_path_factory.mktemp("a"), data_dir)
    second = run_all(tmp_path_factory.mktemp("b"), data_dir)
    return first, second, load_dataset("digits", data_dir)


@pytest.mark.slow
@pytest.mark.parametrize("method", list_strategies())
def test_two_stages_chain_correctly(runs, method):
    results, _, dataset = runs
    stage0 = read_labeled(
        path(results, method, 0, "labeled.parquet"),
        dataset.y_train,
        0,
        {"experiment": "tiny", "method": ALL_METHODS, "seed": 0},
    )
    stage1 = read_labeled(
        path(results, method, 1, "labeled.parquet"),
        dataset.y_train,
        1,
        {"experiment": "tiny", "method": method, "seed": 0},
    )
    assert len(stage0.indices) == INITIAL and stage0.table["score"].isna().all()
    # Stage 1 = stage 0 plus exactly `budget` new, distinct indices with their oracle labels.
    assert set(stage0.indices) < set(stage1.indices)
    new = stage1.table[stage1.table["stage_added"] == 1]
    assert len(new) == BUDGET and len(stage1.indices) == INITIAL + BUDGET
    assert not new["score"].isna().any()
    assert (new["label"].to_numpy() == dataset.y_train[new["index"].to_numpy()]).all()
    scores, meta = read_scores(path(results, method, 0, "scores.parquet"))
    assert len(scores) == 200 and scores["chosen"].sum() == BUDGET
    assert set(scores.loc[scores["chosen"], "index"]) == set(new["index"])
    assert not set(scores["index"]) & set(stage0.indices)
    assert meta["query_seconds"] > 0
    if strategy_class(method).uses_task_model:
        assert scores["true_loss"].ge(0).all()
    for stage in (0, 1):
        assert path(results, method, stage, "metrics.json").exists()


@pytest.mark.slow
def test_stage0_is_shared_by_all_methods(runs):
    results, _, _ = runs
    # One initial pool for every method, one stage-0 model per training recipe.
    pools = {path(results, m, 0, "labeled.parquet") for m in list_strategies()}
    assert pools == {results / "tiny/stage0/seed0/labeled.parquet"}
    models = {path(results, m, 0, "model.pt") for m in list_strategies()}
    assert sorted(p.parent.name for p in models) == [
        "ensemble",
        "margin_ranker",
        "plain",
        "ranking_ranker",
    ]
    # every method scores the same candidate subset at a stage
    subsets = {
        m: set(read_scores(path(results, m, 0, "scores.parquet"))[0]["index"])
        for m in list_strategies()
    }
    assert len({frozenset(s) for s in subsets.values()}) == 1


@pytest.mark.slow
def test_index_files_match_the_expected_results(runs):
    """Every method's index files equal the committed ones (tests/expected_results.py)."""
    results = runs[0]
    files = sorted(results.rglob("*.parquet"))
    assert len(files) == 1 + 2 * len(list_strategies())  # pool; each method's query + stage 1
    check_against_expected("cli_digits_two_stages", results, files)


@pytest.mark.slow
@pytest.mark.parametrize("method", list_strategies())
def test_same_config_and_seed_give_identical_index_files(runs, method):
    first, second, _ = runs
    for stage in (0, 1):
        a = path(first, method, stage, "labeled.parquet").read_bytes()
        b = path(second, method, stage, "labeled.parquet").read_bytes()
        assert a == b, f"{method} stage {stage} differs between two identical runs"


def test_discovery_commands(capsys):
    assert main(["methods"]) == 0
    assert capsys.readouterr().out.split() == list_strategies()
    assert main(["datasets"]) == 0
    assert "moons" in capsys.readouterr().out.split()


def test_schema_command_prints_or_writes_the_generated_schema(tmp_path, monkeypatch, capsys):
    assert main(["schema"]) == 0
    printed = capsys.readouterr().out
    assert printed == schema_text() and printed.startswith("# Generated by `tavaal schema")
    monkeypatch.chdir(tmp_path)
    # Outside the repository root there is no schemas/ folder to write to.
    assert main(["schema", "--write"]) == 2
    assert "run it in the repository root" in capsys.readouterr().err
    (tmp_path / "schemas").mkdir()
    assert main(["schema", "--write"]) == 0
    assert (tmp_path / "schemas" / "config.schema.yaml").read_text() == printed


def test_inspect_reports_counts_and_overlap(runs, capsys):
    results, _, dataset = runs
    a = path(results, "entropy", 1, "labeled.parquet")
    b = path(results, "random", 1, "labeled.parquet")
    assert main(["inspect", str(a), "--against", str(b)]) == 0
    out = capsys.readouterr().out
    assert "rows: 60" in out
    assert "samples per stage_added: 0: 40, 1: 20" in out
    shared = len(set(read_labeled(a).indices) & set(read_labeled(b).indices))
    assert f"{shared} shared" in out and shared >= INITIAL


def test_bad_input_is_one_clear_error_and_nonzero_exit(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump({"experiments": {"e": {"dataset": "digits", "model": "nope"}}})
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tavaal.cli",
            "train",
            "--config",
            str(config),
            "--experiment",
            "e",
            "--method",
            "random",
            "--seed",
            "0",
            "--stage",
            "0",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "tavaal: error: experiments.e.model: unknown task model 'nope'; known: "
        "digits_cnn, mlp, resnet18, resnet18_imagenet, small_cnn, vgg16_bn, vgg16_bn_224"
    ]


def test_missing_index_file_names_it(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    code = main(
        [
            "train",
            "--config",
            str(config),
            "--experiment",
            "tiny",
            "--method",
            "random",
            "--seed",
            "3",
            "--stage",
            "0",
            "--results-dir",
            str(tmp_path / "r"),
            "--data-dir",
            str(tmp_path / "d"),
        ]
    )
    assert code == 2


def test_inspect_shows_a_labeled_files_own_error(tmp_path, capsys):
    """A labeled file with a duplicated row: read_labeled's message, not a KeyError from
    retrying it as a scores file."""
    from tavaal.pool import make_table, write_labeled

    bad = tmp_path / "labeled.parquet"
    table = make_table(np.array([3, 5, 5]), np.array([0, 1, 1]), 0)
    meta = {"experiment": "e", "method": "*", "seed": 0, "stage": 0, "settings_hash": "x"}
    write_labeled(bad, table, meta)
    assert main(["inspect", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"tavaal: error: {bad}: index 5 appears twice"
    assert main(["inspect", str(tmp_path / "none.parquet")]) == 2
    assert "index file not found" in capsys.readouterr().err


def test_toy_folder_command_writes_the_same_files_for_the_same_seed(tmp_path, capsys):
    def written(folder):
        return {
            str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }

    args = ["--pool-per-class", "4", "--test-per-class", "2", "--seed", "3"]
    assert main(["toy-folder", str(tmp_path / "a"), *args]) == 0
    out = capsys.readouterr().out
    assert f"{tmp_path / 'a' / 'truth.csv'}: the true labels of the 12 pool images" in out
    first = written(tmp_path / "a")
    images = [name for name in first if name.startswith("images/")]
    assert len(images) == 18 and {name[-4:] for name in images} <= {".jpg", ".png"}
    assert len(first["truth.csv"].decode().splitlines()) == 1 + 12
    assert len(first["test_labels.csv"].decode().splitlines()) == 1 + 6
    assert main(["toy-folder", str(tmp_path / "b"), *args]) == 0
    assert written(tmp_path / "b") == first


def test_inspect_names_a_parquet_that_is_not_an_index_file(tmp_path, capsys):
    """An experiment's summary.parquet is not an index file: said so, with what inspect reads,
    instead of a KeyError: 'chosen'."""
    import pandas as pd

    summary = tmp_path / "summary.parquet"
    pd.DataFrame({"method": ["random"], "stage": [0], "accuracy": [0.5]}).to_parquet(summary)
    assert main(["inspect", str(summary)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"tavaal: error: {summary}: not an index file (its columns: method, stage, accuracy); "
        "`tavaal inspect` reads a stage's labeled.parquet (columns index, label, stage_added, "
        "score) or scores.parquet (columns index, score, chosen, ...)"
    )
