"""What a workflow job's process loads and how it ends (its fixed cost; docs/workflow.md).

The workflow scripts run here as Snakemake runs them, one fresh interpreter each, with a
stand-in for the `snakemake` object its script preamble sets. A training job must not import
torch._dynamo (tavaal.optim), pandas, scipy, scikit-learn or matplotlib; a VAAL/TA-VAAL query
must not import torch._dynamo either; a finished job ends at once with status 0, a failed one
with its traceback in the log and a non-zero status; and those two fast paths (tavaal.optim,
`end_process`) change no output bit, no metric and no log line. The tests run on every torch
that CI installs (README, "Beside your own torch").
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from tavaal.config import experiment_from_config
from tavaal.data import prepare_dataset
from tavaal.layout import run_file
from tavaal.optim import FAST_OPTIMIZERS_ENV
from tavaal.pool import read_labeled, read_scores
from tavaal.stage import FAST_EXIT_ENV, run_init_pool

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "workflow_scripts"
CONFIG = {
    "device": "cpu",
    "experiments": {
        "tiny": {
            "dataset": "moons",
            "model": "mlp",
            "methods": ["random", "vaal", "tavaal"],
            "seeds": [0],
            "initial_size": 20,
            "budget": 10,
            "stages": 2,
            "subset_size": 60,
            "train": {"epochs": 3, "batch_size": 16, "optimizer": "adam", "milestones": [2]},
            "ranker": {"detach_epoch": 2},
            "vae": {"latent_dim": 4, "hidden": 8, "disc_hidden": 8, "iterations": 5},
        }
    },
}
# Run the given (script, snakemake attributes) jobs one after the other in this interpreter,
# then print the names of the loaded modules.
RUNNER = textwrap.dedent(
    """
    import json, runpy, sys

    class Namespace(dict):
        __getattr__ = dict.__getitem__

    for script, attributes in json.loads(sys.argv[1]):
        snakemake = Namespace(
            {k: v if k == "config" or not isinstance(v, dict) else Namespace(v)
             for k, v in attributes.items()}
        )
        runpy.run_path(script, init_globals={"snakemake": snakemake}, run_name="__main__")
    print(json.dumps(sorted(sys.modules)))
    """
)
NEVER_IN_A_JOB = {"torch._dynamo", "sympy", "sklearn", "matplotlib"}


def _new_workdir(root: Path) -> Path:
    (root / "logs").mkdir()  # Snakemake makes the log folders
    prepare_dataset("moons", root / "data")
    exp = experiment_from_config(CONFIG, "tiny")
    run_init_pool(exp, 0, root / "data", _path(root, "random", 0, "labeled.parquet"))
    return root


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return _new_workdir(tmp_path_factory.mktemp("jobs"))


def _path(root: Path, method: str, stage: int, name: str) -> Path:
    return root / run_file("results", "tiny", method, 0, stage, name)


def _run(
    root: Path, jobs: list, fast_exit: bool = False, fast_optimizers: bool = True
) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        **{FAST_EXIT_ENV: "1" if fast_exit else "0"},
        **{FAST_OPTIMIZERS_ENV: "1" if fast_optimizers else "0"},
    )
    # Snakemake gives every job its rule's threads (1 for these rules and dataset).
    payload = json.dumps(
        [[str(SCRIPTS / script), {"threads": 1, **attributes}] for script, attributes in jobs]
    )
    return subprocess.run(
        [sys.executable, "-c", RUNNER, payload],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _modules(result: subprocess.CompletedProcess) -> set[str]:
    assert result.returncode == 0, result.stderr[-3000:]
    return set(json.loads(result.stdout.splitlines()[-1]))


# A method of each training recipe that the tests train (its stage-0 model is the recipe's).
RECIPE_METHOD = {"plain": "vaal", "ranking_ranker": "tavaal"}


def _model(root: Path, recipe: str) -> Path:
    return _path(root, RECIPE_METHOD[recipe], 0, "model.pt")


def _train_initial(root: Path, recipe: str) -> tuple[str, dict]:
    model = _model(root, recipe)
    return "train.py", {
        "input": {
            "labeled": str(_path(root, "random", 0, "labeled.parquet")),
            "dataset": str(root / "data" / "moons"),
        },
        "output": {"model": str(model), "metrics": str(model.with_name("metrics.json"))},
        "log": [str(root / "logs" / f"train_{recipe}.log")],
        "wildcards": {"experiment": "tiny", "recipe": recipe, "seed": "0"},
        "params": {},
        "config": CONFIG,
    }


def _query(root: Path, method: str, recipe: str | None) -> tuple[str, dict]:
    inputs = {
        "labeled": str(_path(root, method, 0, "labeled.parquet")),
        "dataset": str(root / "data" / "moons"),
    }
    if recipe is not None:
        inputs["model"] = str(_model(root, recipe))
    return "query.py", {
        "input": inputs,
        "output": {
            "labeled": str(_path(root, method, 1, "labeled.parquet")),
            "scores": str(_path(root, method, 0, "scores.parquet")),
        },
        "log": [str(root / "logs" / f"query_{method}.log")],
        "wildcards": {"experiment": "tiny", "method": method, "seed": "0"},
        "params": {"stage": 0},
        "config": CONFIG,
    }


def test_a_training_job_loads_neither_dynamo_nor_pandas_scipy_sklearn_matplotlib(workdir):
    result = _run(
        workdir, [_train_initial(workdir, "plain"), _train_initial(workdir, "ranking_ranker")]
    )
    loaded = _modules(result)
    assert "torch" in loaded
    assert loaded.isdisjoint(NEVER_IN_A_JOB | {"pandas", "scipy"}), sorted(
        loaded & (NEVER_IN_A_JOB | {"pandas", "scipy"})
    )
    assert _model(workdir, "ranking_ranker").exists()


def test_an_adversarial_query_does_not_load_dynamo(workdir):
    if not _model(workdir, "ranking_ranker").exists():
        _modules(_run(workdir, [_train_initial(workdir, "ranking_ranker")]))
    result = _run(
        workdir, [_query(workdir, "vaal", None), _query(workdir, "tavaal", "ranking_ranker")]
    )
    loaded = _modules(result)
    assert loaded.isdisjoint(NEVER_IN_A_JOB), sorted(loaded & NEVER_IN_A_JOB)
    for method in ("vaal", "tavaal"):
        assert len(read_labeled(_path(workdir, method, 1, "labeled.parquet")).indices) == 30


def test_a_finished_job_exits_at_once_with_status_0(workdir, tmp_path):
    job = _train_initial(workdir, "plain")
    model = tmp_path / "model.pt"
    job[1]["output"] = {"model": str(model), "metrics": str(tmp_path / "metrics.json")}
    job[1]["log"] = [str(tmp_path / "train.log")]
    result = _run(workdir, [job], fast_exit=True)
    assert result.returncode == 0, result.stderr[-3000:]
    # os._exit: the runner's line after the job never ran, but the outputs and log are there.
    assert result.stdout == ""
    assert model.exists() and (tmp_path / "metrics.json").exists()
    assert "test accuracy" in (tmp_path / "train.log").read_text()


def test_a_failed_job_exits_non_zero_with_its_traceback_in_the_log(workdir, tmp_path):
    job = _train_initial(workdir, "plain")
    job[1]["input"]["labeled"] = str(tmp_path / "missing.parquet")
    job[1]["log"] = [str(tmp_path / "train.log")]
    result = _run(workdir, [job], fast_exit=True)
    assert result.returncode != 0
    log = (tmp_path / "train.log").read_text()
    assert "Traceback" in log and "missing.parquet" in log


# What differs between two runs of one job besides its results: the seconds it took.
TIMING = re.compile(r"\s*\d+(\.\d+)?(s\b| img/s| it/s)")
TIMING_METRICS = {"train_seconds", "images_per_second"}


def test_the_fast_paths_change_no_output_metric_or_log_line(tmp_path_factory):
    """Every job of a train -> query chain, once with both fast paths (each job its own process,
    as under Snakemake) and once with neither: the same bytes, tensors, metrics and log lines."""
    roots = {}
    for fast in (True, False):
        root = _new_workdir(tmp_path_factory.mktemp("fast" if fast else "slow"))
        jobs = [
            _train_initial(root, "plain"),
            _train_initial(root, "ranking_ranker"),
            _query(root, "vaal", None),
            _query(root, "tavaal", "ranking_ranker"),
        ]
        for job in jobs:
            result = _run(root, [job], fast_exit=fast, fast_optimizers=fast)
            assert result.returncode == 0, result.stderr[-3000:]
            # The fast exit skipped the runner's own last line; the normal shutdown did not.
            assert (result.stdout == "") is fast
        roots[fast] = root
    fast_root, slow_root = roots[True], roots[False]
    for method in ("vaal", "tavaal"):
        name = "labeled.parquet"
        fast_bytes = _path(fast_root, method, 1, name).read_bytes()
        assert fast_bytes == _path(slow_root, method, 1, name).read_bytes(), name
        # The scores file records the query's seconds beside its scores.
        fast_scores, fast_meta = read_scores(_path(fast_root, method, 0, "scores.parquet"))
        slow_scores, slow_meta = read_scores(_path(slow_root, method, 0, "scores.parquet"))
        assert fast_scores.equals(slow_scores)
        assert _without_timings(fast_meta) == _without_timings(slow_meta)
    for recipe in RECIPE_METHOD:
        fast_ckpt = torch.load(_model(fast_root, recipe), weights_only=True)
        slow_ckpt = torch.load(_model(slow_root, recipe), weights_only=True)
        for part in ("model", "ranker", "optimizer"):
            _assert_equal_tree(fast_ckpt[part], slow_ckpt[part], f"{recipe} {part}")
        fast_metrics = json.loads(_model(fast_root, recipe).with_name("metrics.json").read_text())
        slow_metrics = json.loads(_model(slow_root, recipe).with_name("metrics.json").read_text())
        assert set(fast_metrics) == set(slow_metrics)
        for key in set(fast_metrics) - TIMING_METRICS:
            assert fast_metrics[key] == slow_metrics[key], key
    fast_logs = sorted(p.name for p in (fast_root / "logs").iterdir())
    assert fast_logs == sorted(p.name for p in (slow_root / "logs").iterdir())
    assert len(fast_logs) == 4
    for name in fast_logs:
        fast_lines = TIMING.sub("T", (fast_root / "logs" / name).read_text()).splitlines()
        slow_lines = TIMING.sub("T", (slow_root / "logs" / name).read_text()).splitlines()
        assert fast_lines == slow_lines, name
        assert len(fast_lines) > 3, name


def _without_timings(metadata: dict) -> dict:
    """Metadata without its timings (every key ending in "seconds", nested ones too)."""
    return {
        key: _without_timings(value) if isinstance(value, dict) else value
        for key, value in metadata.items()
        if not key.endswith("seconds")
    }


def _assert_equal_tree(a, b, where: str) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_equal_tree(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_equal_tree(x, y, f"{where}[{index}]")
    elif torch.is_tensor(a):
        assert torch.equal(a, b), where
    else:
        assert a == b, where
