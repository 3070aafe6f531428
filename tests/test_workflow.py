"""The Snakemake workflow: config schema, DAG shape (dry-runs), and tiny real runs.

Snakemake runs as a subprocess (`python -m snakemake`) in a temporary working directory with
`--snakefile <repo>/Snakefile`, exactly as a user would run it; `config.yaml` is copied there
because the workflow's `configfile:` is resolved in the working directory.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from expected_results import check_against_expected

from tavaal import cli, report
from tavaal.config import ExperimentConfig, TrainConfig
from tavaal.config_schema import config_schema, schema_text
from tavaal.data import class_count_entropy, list_datasets, list_raw_sources
from tavaal.data.toy_folder import write_toy_folder
from tavaal.layout import run_file
from tavaal.models import list_task_models
from tavaal.models.drn import list_segmentation_models
from tavaal.pool import read_labeled
from tavaal.strategies import list_strategies, strategy_class

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "schemas" / "config.schema.yaml"
PRESETS = sorted((REPO / "presets").glob("*.yaml"))
# Editing a workflow script must not rerun jobs: the policy in docs/workflow.md.
TRIGGERS = ["--rerun-triggers", "mtime", "params", "input"]
ADVERSARIAL = {"vaal", "tavaal"}

TINY = {
    "run_experiments": ["tiny"],
    "experiments": {
        "tiny": {
            "dataset": "moons",
            "model": "mlp",
            "methods": ["random", "tavaal"],
            "seeds": [0, 1],
            "initial_size": 20,
            "budget": 10,
            "stages": 3,
            "subset_size": 60,
            "train": {
                "epochs": 5,
                "batch_size": 32,
                "optimizer": "adam",
                "lr": 0.05,
                "milestones": [],
                "weight_decay": 0.0,
            },
            "ranker": {"detach_epoch": 3},
            # Enough iterations that a TA-VAAL query runs for a few seconds (the kill test
            # needs a job that is still running when it looks).
            "vae": {
                "latent_dim": 4,
                "hidden": 16,
                "disc_hidden": 16,
                "disc_depth": 2,
                "batch_size": 32,
                "iterations": 1500,
                "lr": 0.01,
                "disc_lr": 0.01,
                "init": "kaiming",  # as the committed fingerprints were made
            },
        }
    },
}
TINY_FIGURES = [
    "figures/accuracy.png",
    "figures/class_entropy.png",
    "figures/improvement.png",
    "figures/discriminator_histogram.png",
    "figures/loss_vs_likelihood.png",
    "figures/selection.png",
    *(
        f"tables/{name}.{ext}"
        for name in (
            "accuracy",
            "aulc",
            "labels_to_reach",
            "sampling_time",
            "adversarial_health",
            "loss_vs_likelihood",
        )
        for ext in ("csv", "md", "html")
    ),
]


# ------------------------------------------------------------------------------ helpers


def workdir_with_config(path: Path, extra: dict | None = None, name: str = "extra.yaml") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "config.yaml", path / "config.yaml")
    if extra is not None:
        (path / name).write_text(yaml.safe_dump(extra, sort_keys=False))
    return path


def snakemake(workdir: Path, *args: str, check: bool = True, timeout: int = 900):
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({result.returncode}): {' '.join(args)}\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-6000:]}"
        )
    return result


def dry_run_counts(workdir: Path, *args: str) -> Counter:
    """Jobs per rule of a dry-run, from Snakemake's "Job stats" table."""
    result = snakemake(workdir, *args, "-n", "--quiet", "rules", *TRIGGERS)
    text = result.stdout + result.stderr
    if "Nothing to be done" in text:
        return Counter()
    lines = text.splitlines()
    start = lines.index("Job stats:") + 3
    counts = Counter()
    for line in lines[start:]:
        name, _, count = line.strip().rpartition(" ")
        if name.strip() == "total":
            break
        counts[name.strip()] = int(count)
    return counts


def planned_jobs(workdir: Path, *args: str) -> list[dict[str, str]]:
    """Every job of a dry-run as {"rule": ..., "input": ..., "output": ..., ...}."""
    result = snakemake(workdir, *args, "-n", *TRIGGERS)
    jobs, job = [], None
    for line in (result.stdout + result.stderr).splitlines():
        header = re.match(r"^(?:local)?rule (\w+):$", line)
        if header:
            job = {"rule": header.group(1)}
            jobs.append(job)
        elif job is not None and re.match(r"^    \w+: ", line):
            key, _, value = line.strip().partition(": ")
            job[key] = value
        else:
            job = None
    return jobs


def files(value: str) -> set[str]:
    return {part.strip() for part in value.split(",") if part.strip()}


def merged_config(preset: dict | None) -> dict:
    """config.yaml with a --configfile merged as Snakemake does (dicts merge, lists replace)."""

    def merge(base, new):
        for key, value in new.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                merge(base[key], value)
            else:
                base[key] = copy.deepcopy(value)

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    merge(config, preset or {})
    return config


def expected_jobs(config: dict) -> Counter:
    """Jobs per rule that `all_figures` needs from scratch, computed from the config alone."""
    names = config.get("run_experiments") or list(config["experiments"])
    counts = Counter({"all_figures": 1})
    datasets = set()
    for name in names:
        exp = config["experiments"][name]
        methods, seeds = exp.get("methods", ["random"]), exp.get("seeds", [0])
        stages = exp.get("stages", 10)
        runs = len(methods) * len(seeds)
        datasets.add(exp["dataset"])
        if exp.get("oracle", {}).get("kind") == "human":
            # Nobody has labeled anything yet: the run stops at the initial pool's request.
            counts["request_initial_labels"] += len(seeds)
            continue
        # Stage 0 is shared: one pool per seed, one model per training recipe and seed.
        recipes = {strategy_class(m).recipe.name for m in methods}
        counts["init_pool"] += len(seeds)
        counts["train_initial"] += len(recipes) * len(seeds)
        if stages > 1:
            counts["train"] += runs * (stages - 1)
        for stage in range(stages - 1):
            counts[f"query_stage{stage}"] += runs
        for rule in ("aggregate", "figure_accuracy", "figure_class_entropy", "tables"):
            counts[rule] += 1
        if "random" in methods and len(methods) > 1:
            counts["figure_improvement"] += 1
        if stages > 1:
            counts["table_sampling_time"] += 1
            if ADVERSARIAL & set(methods):
                counts["figure_discriminator_histogram"] += 1
                counts["figure_loss_vs_likelihood"] += 1
                counts["table_adversarial_health"] += 1
            if exp["dataset"] == "moons":
                counts["figure_selection"] += 1
        if exp.get("oracle", {}).get("noise", 0) > 0:
            counts["table_oracle_errors"] += 1
    image_folders = datasets & set(config.get("image_folders") or {})
    counts["prepare_dataset"] = len(datasets - image_folders)
    if image_folders:
        counts["prepare_image_folder"] = len(image_folders)
    if config.get("studies"):
        counts["study"] = len(config["studies"])
    return counts


def tiny_files(root: Path, pattern: str) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.glob(pattern))}


# ------------------------------------------------------------------------------- schema


def load_schema() -> dict:
    return yaml.safe_load(SCHEMA.read_text())


def test_schema_enums_match_the_registries():
    schema = load_schema()
    experiment = schema["$defs"]["experiment"]["properties"]
    assert sorted(experiment["methods"]["items"]["enum"]) == list_strategies()
    assert sorted(experiment["dataset"]["anyOf"][0]["enum"]) == list_datasets(image_folders=False)
    models = sorted(list_task_models() + list_segmentation_models())
    assert sorted(experiment["model"]["enum"]) == models
    assert schema["properties"]["raw_sources"]["propertyNames"]["enum"] == list_raw_sources()


def test_the_schema_file_is_what_the_dataclasses_generate():
    committed = SCHEMA.read_text()
    assert committed == schema_text(), (
        "schemas/config.schema.yaml is not what tavaal/config.py and tavaal/config_schema.py "
        "generate: run `tavaal schema --write` in the repository root"
    )
    # The YAML writer (folded descriptions, flow-style short mappings) loses nothing.
    assert yaml.safe_load(committed) == config_schema()


def test_the_schema_takes_types_defaults_and_constraints_from_the_fields():
    defs = config_schema()["$defs"]
    crop_ratio = dict(defs["train"]["properties"]["crop_ratio"])
    doc = {f.name: f for f in dataclasses.fields(TrainConfig)}["crop_ratio"].metadata["doc"]
    assert crop_ratio.pop("description") == doc and doc.startswith("resized_crop")
    assert crop_ratio == {
        "type": "array",
        "items": {"type": "number", "exclusiveMinimum": 0},
        "minItems": 2,
        "maxItems": 2,
        "default": [0.75, 4 / 3],
    }
    assert defs["oracle"]["properties"]["groups"]["items"] == {
        "type": "array",
        "items": {"type": "integer", "minimum": 0},
        "minItems": 1,
    }
    experiment = defs["experiment"]
    assert experiment["required"] == ["dataset", "model"]
    assert "name" not in experiment["properties"]
    assert experiment["properties"]["vae"] == {"$ref": "#/$defs/vae", "default": {}}
    assert defs["vae"]["properties"]["kl_reduction"]["enum"] == ["mean", "sum"]
    assert defs["vae"]["default"] == {} and defs["vae"]["additionalProperties"] is False


def test_validation_fills_the_dataclass_defaults():
    from snakemake.utils import validate

    config = {"experiments": {"e": {"dataset": "digits", "model": "digits_cnn"}}}
    validate(config, str(SCHEMA))
    assert config["data_dir"] == "data"
    assert config["results_dir"] == "results"
    assert config["device"] == "auto"
    assert config["download"] is False
    assert config["raw_sources"] == {}
    assert config["run_experiments"] is None
    assert config["report"]["baseline"] == "random"
    filled = ExperimentConfig.from_dict("e", config["experiments"]["e"])
    assert filled == ExperimentConfig(name="e", dataset="digits", model="digits_cnn")


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ({"train": {"epoch": 3}}, "epoch"),
        ({"methods": ["random", "not_a_method"]}, "not_a_method"),
        ({"vae": {"kl_reduction": "max"}}, "max"),
        ({"seeds": [-1]}, "-1"),
    ],
)
def test_validation_names_the_bad_key_or_value(bad, named):
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    experiment = {"dataset": "moons", "model": "mlp", **bad}
    with pytest.raises(WorkflowError) as error:
        validate({"experiments": {"moons": experiment}}, str(SCHEMA))
    assert named in str(error.value.args)


def test_validation_names_an_unknown_raw_source():
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    experiments = {"moons": {"dataset": "moons", "model": "mlp"}}
    validate({"raw_sources": {"fashion_mnist": "/x"}, "experiments": experiments}, str(SCHEMA))
    for bad, named in (({"mnist": "/x"}, "mnist"), ({"svhn": ""}, "svhn")):
        with pytest.raises(WorkflowError) as error:
            validate({"raw_sources": bad, "experiments": experiments}, str(SCHEMA))
        assert named in str(error.value.args)


def test_a_bad_config_stops_before_any_job(tmp_path):
    workdir = workdir_with_config(tmp_path, {"experiments": {"moons": {"vae": {"lattent": 2}}}})
    result = snakemake(workdir, "-n", "--configfile", str(workdir / "extra.yaml"), check=False)
    assert result.returncode != 0
    assert "lattent" in result.stderr + result.stdout
    assert not (workdir / "results").exists()
    # A budget the pool cannot give: found when the DAG is built, not by the query that runs
    # out (digits_imb10 has 691 train images; 40 + 20 x 40 = 840).
    greedy = workdir_with_config(tmp_path / "g", {"experiments": {"digits": {"stages": 21}}})
    result = snakemake(greedy, "-n", "--configfile", str(greedy / "extra.yaml"), check=False)
    assert result.returncode != 0
    assert (
        "experiments.digits: initial_size 40 + (stages 21 - 1) x budget 40 = 840 samples, but "
        "digits_imb10's train split has 691" in result.stderr + result.stdout
    )
    assert not (greedy / "results").exists()
    unknown = workdir_with_config(tmp_path / "u", {"run_experiments": ["nope"]})
    result = snakemake(unknown, "-n", "--configfile", str(unknown / "extra.yaml"), check=False)
    assert result.returncode != 0
    assert "run_experiments: 'nope' is not defined" in result.stderr + result.stdout


# ----------------------------------------------------------------------------- dry-runs


def test_default_config_dry_run_lists_the_expected_jobs(tmp_path):
    workdir = workdir_with_config(tmp_path)
    assert dry_run_counts(workdir) == expected_jobs(merged_config(None))


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_preset_dry_run_replaces_the_default_experiments(tmp_path, preset):
    workdir = workdir_with_config(tmp_path)
    # An image folder must exist for the workflow to parse: the practitioner tutorial's is the
    # generated toy folder (`tavaal toy-folder toy`), written here as its README step does.
    folders = (yaml.safe_load(preset.read_text()).get("image_folders") or {}).values()
    if folders:
        assert all(Path(folder["path"]).parts[0] == "toy" for folder in folders), preset
        write_toy_folder(workdir / "toy")
    counts = dry_run_counts(workdir, "--configfile", str(preset))
    config = merged_config(yaml.safe_load(preset.read_text()))
    assert counts == expected_jobs(config)
    # Only the preset's experiments: moons, a default experiment no preset names, is not built.
    assert "moons" not in config["run_experiments"]


def test_study_presets_repeat_their_baseline_experiments_exactly():
    """YAML cannot include a file: a study preset repeats its baseline experiment, and the copy
    must equal the original (so that both presets share results)."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())["experiments"]
    fmnist = yaml.safe_load((REPO / "presets/fashion_mnist_cpu.yaml").read_text())["experiments"]
    study = yaml.safe_load((REPO / "presets/study_fmnist.yaml").read_text())["experiments"]
    assert study["fmnist"] == fmnist["fmnist"]
    digits = yaml.safe_load((REPO / "presets/study_digits.yaml").read_text())["experiments"]
    for name, variant in digits.items():
        same = {
            k: v
            for k, v in variant.items()
            if k not in ("methods", "vae", "subset_size", "initial_size")
        }
        assert same == {k: v for k, v in config["digits"].items() if k in same}, name


def test_diagnostics_target_needs_only_the_queries(tmp_path):
    """`diagnostics` (issue 9) builds, per planar experiment with queries, the selection
    geometry table and (with VAAL or TA-VAAL) the adversary map, from the queries' files alone:
    no training after the last query, no summary. all_figures does not include them."""
    workdir = workdir_with_config(tmp_path, TINY)
    counts = dry_run_counts(workdir, "diagnostics", "--configfile", str(workdir / "extra.yaml"))
    exp = TINY["experiments"]["tiny"]
    runs = len(exp["methods"]) * len(exp["seeds"])
    queries = exp["stages"] - 1
    assert counts == Counter(
        {
            "prepare_dataset": 1,
            "init_pool": len(exp["seeds"]),
            "train_initial": 2 * len(exp["seeds"]),  # plain (random) and ranking_ranker
            **{f"query_stage{k}": runs for k in range(queries)},
            # The model of every query stage after the first.
            "train": runs * (queries - 1),
            "figure_adversary_map": 1,
            "table_selection_geometry": 1,
            "diagnostics": 1,
        }
    )
    assert "figure_adversary_map" not in expected_jobs(merged_config(TINY))


def test_query_reads_the_task_model_only_when_the_method_uses_it(tmp_path):
    workdir = workdir_with_config(tmp_path, TINY)
    jobs = planned_jobs(workdir, "--configfile", str(workdir / "extra.yaml"))
    queries = [job for job in jobs if job["rule"].startswith("query_stage")]
    assert len(queries) == 2 * 2 * 2
    for job in queries:
        stage = int(job["rule"].removeprefix("query_stage"))
        wildcards = dict(item.split("=") for item in job["wildcards"].split(", "))
        method, seed = wildcards["method"], int(wildcards["seed"])
        run = f"results/tiny/{method}/seed{seed}"
        # Stage 0's pool and model are the shared ones (tavaal.layout).
        expected = {str(run_file("results", "tiny", method, seed, stage, "labeled.parquet"))}
        expected.add("data/moons")
        if strategy_class(method).uses_task_model:
            expected.add(str(run_file("results", "tiny", method, seed, stage, "model.pt")))
        assert files(job["input"]) == expected
        assert files(job["output"]) == {
            f"{run}/stage{stage + 1}/labeled.parquet",
            f"{run}/stage{stage}/scores.parquet",
        }


# Issue 10: a mix of plain and non-plain methods with random, and an experiment whose only
# method trains with a Ranker (no method of it trains plain) and whose oracle is noisy.
ABLATION = {
    "run_experiments": ["mixed", "rankers"],
    "experiments": {
        "mixed": {
            **TINY["experiments"]["tiny"],
            "methods": ["random", "entropy", "lloss", "tavaal"],
        },
        "rankers": {
            **TINY["experiments"]["tiny"],
            "methods": ["lloss"],
            "seeds": [0],
            "stages": 2,
            "oracle": {"noise": 0.1, "confusion": "any"},
        },
    },
}


def test_plain_retraining_target_retrains_the_non_plain_methods_only(tmp_path):
    """TA-VAAL §6.1: a plain classifier on every labeled set of stage >= 1 of the methods that
    do not train plain (lloss, tavaal); stage 0 is the shared stage-0 plain model, trained even
    where no method of the experiment trains plain; random's metrics as reference."""
    from tavaal.resources import train_estimate
    from tavaal.training import PLAIN

    workdir = workdir_with_config(tmp_path, ABLATION)
    jobs = planned_jobs(workdir, "plain_retraining", "--configfile", str(workdir / "extra.yaml"))
    retrained = [job for job in jobs if job["rule"] == "retrain_plain"]
    runs = {("mixed", m, s, k) for m in ("lloss", "tavaal") for s in (0, 1) for k in (1, 2)}
    runs.add(("rankers", "lloss", 0, 1))
    assert len(retrained) == len(runs)
    for job in retrained:
        w = dict(item.split("=") for item in job["wildcards"].split(", "))
        run = f"results/{w['experiment']}/{w['method']}/seed{w['seed']}/stage{w['stage']}"
        assert files(job["input"]) == {f"{run}/labeled.parquet", "data/moons"}
        assert files(job["output"]) == {f"{run}/plain/model.pt", f"{run}/plain/metrics.json"}
        runs.remove((w["experiment"], w["method"], int(w["seed"]), int(w["stage"])))
        # Sized for the plain recipe, not the method's.
        exp = ExperimentConfig.from_dict(w["experiment"], ABLATION["experiments"][w["experiment"]])
        estimate = train_estimate(exp, PLAIN, int(w["stage"]), "auto")
        resources = dict(item.split("=") for item in job["resources"].split(", "))
        assert int(resources["mem_mb"]) == estimate.mem_mb
        assert int(resources["runtime"]) == estimate.runtime_minutes
    assert not runs
    shared = {
        (w["experiment"], w["recipe"])
        for job in jobs
        if job["rule"] == "train_initial"
        for w in [dict(item.split("=") for item in job["wildcards"].split(", "))]
    }
    assert ("rankers", "plain") in shared
    # Entropy is neither retrained nor the reference: none of its jobs is needed.
    assert not any("/entropy/" in job.get("output", "") for job in jobs)
    tables = {
        job["output"].split("/")[1]: files(job["input"])
        for job in jobs
        if job["rule"] == "table_plain_retraining"
    }
    assert set(tables) == {"mixed", "rankers"}
    mixed = tables["mixed"]
    for seed in (0, 1):
        assert f"results/mixed/stage0/seed{seed}/plain/metrics.json" in mixed
        assert f"results/mixed/stage0/seed{seed}/margin_ranker/metrics.json" in mixed
        assert f"results/mixed/random/seed{seed}/stage2/metrics.json" in mixed
        assert f"results/mixed/tavaal/seed{seed}/stage2/plain/metrics.json" in mixed
    assert not any("stage0/plain" in path or "random/seed0/stage1/plain" in path for path in mixed)
    assert tables["rankers"] == {
        "results/rankers/stage0/seed0/margin_ranker/metrics.json",
        "results/rankers/lloss/seed0/stage1/metrics.json",
        "results/rankers/stage0/seed0/plain/metrics.json",
        "results/rankers/lloss/seed0/stage1/plain/metrics.json",
    }


SEGMENTATION = {
    "run_experiments": ["seg"],
    "experiments": {
        "seg": {
            "dataset": "seg_shapes",
            "model": "drn_d_22",
            "methods": list_strategies("segmentation"),
            "initial_size": 8,
            "budget": 4,
            "stages": 2,
            "train": {"dropout": 0.3},
            "vae": {"input_size": 32},
        }
    },
}


def test_a_segmentation_experiment_plans_every_method_and_its_report(tmp_path):
    """A segmentation dataset takes every method that selects on it: the dry run plans one
    pool, one stage-0 training per recipe, every method's query and stage-1 training, and the
    report (whose learning curves read mIoU, `tests/test_report.py`), and writes nothing."""
    workdir = workdir_with_config(tmp_path, SEGMENTATION)
    result = snakemake(workdir, "-n", "--configfile", str(workdir / "extra.yaml"))
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", result.stdout, flags=re.M))
    methods = len(list_strategies("segmentation"))
    assert int(jobs["init_pool"]) == 1 and int(jobs["train_initial"]) == 4
    assert int(jobs["query_stage0"]) == methods and int(jobs["train"]) == methods
    assert {"aggregate", "figure_accuracy", "figure_improvement", "tables"} <= set(jobs)
    assert not (workdir / "data").exists() and not (workdir / "results").exists()


def test_a_noisy_oracle_adds_the_oracle_errors_table(tmp_path):
    workdir = workdir_with_config(tmp_path, ABLATION)
    counts = dry_run_counts(workdir, "--configfile", str(workdir / "extra.yaml"))
    assert counts == expected_jobs(merged_config(ABLATION))
    assert counts["table_oracle_errors"] == 1  # rankers only


# ------------------------------------------------------------------------ tiny real runs


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    workdir = workdir_with_config(tmp_path_factory.mktemp("tiny"), TINY, "tiny.yaml")
    snakemake(
        workdir,
        "all_figures",
        "--configfile",
        str(workdir / "tiny.yaml"),
        "--cores",
        "2",
        *TRIGGERS,
    )
    return workdir


@pytest.mark.slow
def test_tiny_run_produces_every_figure_and_table(tiny_run):
    base = tiny_run / "results" / "tiny"
    for name in TINY_FIGURES:
        path = base / name
        assert path.exists() and path.stat().st_size > 0, name
    assert (base / "figures" / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The preset mechanism: only the tiny experiment ran, not config.yaml's moons/digits.
    assert sorted(p.name for p in (tiny_run / "results").iterdir()) == ["tiny"]
    accuracy = pd.read_csv(base / "tables" / "accuracy.csv")
    assert set(accuracy["method"]) == {"random", "tavaal"}
    assert (base / "tables" / "accuracy.md").read_text().startswith("## Test accuracy")
    logs = [
        "logs/tiny/stage0/seed0/init_pool.log",
        "logs/tiny/stage0/seed0/ranking_ranker/train.log",
        "logs/tiny/tavaal/seed0/stage0/query.log",
        "logs/tiny/tavaal/seed0/stage1/train.log",
    ]
    for log in logs:
        assert (tiny_run / log).read_text().strip(), log
    assert (tiny_run / "job_benchmarks/tiny/tavaal/seed0/stage0/query.tsv").exists()
    assert (tiny_run / "job_benchmarks/tiny/stage0/seed0/plain/train.tsv").exists()
    # Apart from the benchmark scripts' source tree.
    assert not (tiny_run / "benchmarks" / "tiny").exists()


@pytest.mark.slow
def test_tiny_index_files_match_the_expected_results(tiny_run):
    """The workflow's index files equal the committed ones (tests/expected_results.py)."""
    files = sorted((tiny_run / "results/tiny").rglob("*.parquet"))
    files = [path for path in files if path.name != "summary.parquet"]
    assert len(files) == 2 + 2 * 2 * 2 * 2  # 2 pools; random/tavaal x 2 seeds x 2 queries x 2
    check_against_expected("workflow_moons_tiny", tiny_run / "results", files)


@pytest.mark.slow
def test_declared_resources_cover_the_measured_jobs(tiny_run):
    """mem_mb and runtime (tavaal.resources, as the rules declare them for a CPU) hold what
    every train and query job of the tiny run measured, without asking for absurdly more."""
    from tavaal.resources import query_estimate, train_estimate

    exp = ExperimentConfig.from_dict("tiny", TINY["experiments"]["tiny"])
    checked = 0
    for path in sorted((tiny_run / "job_benchmarks/tiny").rglob("*.tsv")):
        measured = pd.read_csv(path, sep="\t").iloc[0]
        parts = path.relative_to(tiny_run / "job_benchmarks/tiny").parts
        if parts[0] == "stage0":  # stage0/seed{s}/{recipe}/train.tsv
            recipe = next(
                strategy_class(m).recipe
                for m in exp.methods
                if strategy_class(m).recipe.name == parts[2]
            )
            declared = train_estimate(exp, recipe, 0, "cpu")
        else:  # {method}/seed{s}/stage{k}/{train,query}.tsv
            method, stage = parts[0], int(parts[2].removeprefix("stage"))
            declared = (
                train_estimate(exp, strategy_class(method).recipe, stage, "cpu")
                if path.stem == "train"
                else query_estimate(exp, method, stage, "cpu")
            )
        assert measured["max_rss"] <= declared.mem_mb <= 4 * measured["max_rss"], path
        assert measured["s"] <= 60 * declared.runtime_minutes, path
        checked += 1
    assert checked == 4 + 8 + 8  # 2 recipes x 2 seeds; 2 methods x 2 seeds x (2 trains, 2 queries)


@pytest.mark.slow
def test_tiny_summary_has_one_row_per_method_seed_stage(tiny_run):
    summary = pd.read_parquet(tiny_run / "results/tiny/summary.parquet")
    keys = summary[["method", "seed", "stage"]]
    assert len(summary) == 2 * 2 * 3
    assert not keys.duplicated().any()
    assert set(map(tuple, keys.to_numpy())) == {
        (m, s, k) for m in ("random", "tavaal") for s in (0, 1) for k in range(3)
    }
    assert list(summary.groupby("stage")["labels"].first()) == [20, 30, 40]
    queries = summary[summary["stage"] < 2]
    assert queries["query_seconds"].notna().all()
    assert summary.loc[summary["stage"] == 2, "query_seconds"].isna().all()
    tavaal = queries[queries["method"] == "tavaal"]
    assert tavaal["diag_disc_auc"].between(0, 1).all()


@pytest.mark.slow
def test_tiny_index_files_chain_by_budget(tiny_run):
    results = tiny_run / "results"
    root = results / "tiny"
    for seed in (0, 1):
        # The initial pool depends on (experiment, seed) only: one file that every method reads.
        initial = root / f"stage0/seed{seed}/labeled.parquet"
        assert read_labeled(initial).metadata["method"] == "*"
        for method in ("random", "tavaal"):
            previous = None
            for stage in range(3):
                labeled = read_labeled(
                    run_file(results, "tiny", method, seed, stage, "labeled.parquet")
                )
                assert labeled.stage == stage
                assert labeled.metadata["method"] == ("*" if stage == 0 else method)
                indices = set(labeled.indices.tolist())
                if previous is not None:
                    assert previous < indices
                    new = indices - previous
                    assert len(new) == 10
                    added = labeled.table.set_index("index").loc[sorted(new), "stage_added"]
                    assert (added == stage).all()
                    scores = pd.read_parquet(
                        root / method / f"seed{seed}/stage{stage - 1}/scores.parquet"
                    )
                    assert set(scores.loc[scores["chosen"], "index"]) == new
                previous = indices


@pytest.mark.slow
def test_plain_retraining_run_retrains_what_run_train_gives(tmp_path):
    """The target on a tiny run: the stage-1 plain classifier is exactly what run_train with
    the plain recipe gives on the method's labeled set; stage 0 is the shared plain model."""
    from tavaal.stage import run_train
    from tavaal.training import PLAIN

    small = copy.deepcopy(TINY)
    small["experiments"]["tiny"].update(methods=["random", "lloss"], stages=2)
    workdir = workdir_with_config(tmp_path / "run", small, "small.yaml")
    config = ["--configfile", str(workdir / "small.yaml")]
    snakemake(workdir, "plain_retraining", *config, "--cores", "2", *TRIGGERS)
    results = workdir / "results"
    base = results / "tiny"
    for name in ("tables/plain_retraining.md", "tables/plain_retraining.html"):
        assert (base / name).stat().st_size > 0, name
    assert (base / "figures/plain_retraining.png").read_bytes()[:4] == b"\x89PNG"
    table = pd.read_csv(base / "tables/plain_retraining.csv")
    assert table["method"].tolist() == ["lloss", "lloss"]
    assert table["labels"].tolist() == [20, 30]
    assert table[["own_mean", "plain_mean", "reference_mean"]].stack().between(0, 1).all()

    def accuracy(path):
        return json.loads(Path(path).read_text())["accuracy"]

    first = table.set_index("stage").loc[0]
    shared = [accuracy(base / f"stage0/seed{s}/plain/metrics.json") for s in (0, 1)]
    assert first["plain_mean"] == pytest.approx(sum(shared) / 2, abs=1e-6)
    assert first["reference_mean"] == pytest.approx(first["plain_mean"], abs=1e-6)
    ranker = [accuracy(base / f"stage0/seed{s}/margin_ranker/metrics.json") for s in (0, 1)]
    assert first["own_mean"] == pytest.approx(sum(ranker) / 2, abs=1e-6)
    exp = ExperimentConfig.from_dict("tiny", small["experiments"]["tiny"])
    retrained = json.loads((base / "lloss/seed0/stage1/plain/metrics.json").read_text())
    assert (retrained["recipe"], retrained["method"], retrained["labels"]) == ("plain", "lloss", 30)
    again = run_train(
        exp,
        PLAIN,
        0,
        1,
        labeled=base / "lloss/seed0/stage1/labeled.parquet",
        data_dir=workdir / "data",
        model_out=tmp_path / "again/model.pt",
        metrics_out=tmp_path / "again/metrics.json",
        method="lloss",
        log=lambda line: None,
    )
    assert again["accuracy"] == retrained["accuracy"]
    assert again["test_loss"] == retrained["test_loss"]


@pytest.mark.slow
def test_study_run_writes_the_table_and_both_figures(tmp_path):
    """A tiny study: the table, the AULC figure and the learning curves of each experiment
    (VAAL Fig. 5), the variant borrowing the first experiment's random runs."""
    base = {**TINY["experiments"]["tiny"], "methods": ["random", "entropy"], "stages": 2}
    study = {
        "run_experiments": ["tiny", "tiny_mc"],
        "experiments": {
            "tiny": base,
            # Entropy ignores mc_samples; what matters here is that random is borrowed.
            "tiny_mc": {**base, "methods": ["entropy"], "seeds": [0], "query": {"mc_samples": 5}},
        },
        "studies": {"mc": {"experiments": ["tiny", "tiny_mc"]}},
    }
    workdir = workdir_with_config(tmp_path, study)
    config = ["--configfile", str(workdir / "extra.yaml")]
    snakemake(workdir, "results/studies/mc/table.csv", *config, "--cores", "2", *TRIGGERS)
    folder = workdir / "results/studies/mc"
    assert sorted(p.name for p in folder.iterdir()) == [
        "aulc.png",
        "curves.png",
        "table.csv",
        "table.html",
        "table.md",
    ]
    assert (folder / "curves.png").read_bytes()[:4] == b"\x89PNG"
    table = pd.read_csv(folder / "table.csv")
    assert table["experiment"].tolist() == ["tiny", "tiny_mc"]
    assert "queried_wrong_labels" not in table  # ideal oracle
    assert not (workdir / "results/tiny_mc/random").exists()


def _mtimes(root: Path) -> dict[str, float]:
    return {
        str(p.relative_to(root)): p.stat().st_mtime_ns
        for p in (root / "results").rglob("*")
        if p.is_file()
    }


@pytest.mark.slow
def test_forcerun_of_one_stage_reruns_only_what_depends_on_it(tiny_run, tmp_path):
    workdir = tmp_path / "copy"
    shutil.copytree(tiny_run, workdir, symlinks=True)
    target = "results/tiny/tavaal/seed0/stage1/labeled.parquet"
    config = ["--configfile", str(workdir / "tiny.yaml")]
    counts = dry_run_counts(workdir, "all_figures", *config, "--forcerun", target)
    compute = {k: v for k, v in counts.items() if k.startswith(("init", "train", "query", "prep"))}
    # query_stage0 makes the target; then stage 1's and stage 2's training and the stage-1
    # query of that (method, seed) only, and the experiment's summary, figures and tables.
    assert compute == {"query_stage0": 1, "train": 2, "query_stage1": 1}
    assert counts["aggregate"] == 1 and counts["figure_accuracy"] == 1
    before = _mtimes(workdir)
    index_before = tiny_files(workdir, "results/tiny/*/seed*/stage*/labeled.parquet")
    time.sleep(1.1)
    snakemake(workdir, "all", *config, "--cores", "2", "--forcerun", target, *TRIGGERS)
    after = _mtimes(workdir)
    run = "results/tiny/tavaal/seed0/"
    assert {path for path in before if after[path] != before[path]} == {
        run + "stage0/scores.parquet",
        run + "stage1/labeled.parquet",
        run + "stage1/model.pt",
        run + "stage1/metrics.json",
        run + "stage1/scores.parquet",
        run + "stage2/labeled.parquet",
        run + "stage2/model.pt",
        run + "stage2/metrics.json",
    }
    # Seeded from (seed, stage, role): the recomputed index files are byte-identical.
    assert tiny_files(workdir, "results/tiny/*/seed*/stage*/labeled.parquet") == index_before


@pytest.mark.slow
def test_rerun_policy(tiny_run, tmp_path):
    config = ["--configfile", str(tiny_run / "tiny.yaml")]
    assert dry_run_counts(tiny_run, "all_figures", *config) == Counter()
    # A newer workflow script does not rerun anything under the documented triggers ...
    copy_dir = tmp_path / "workflow"
    copy_dir.mkdir()
    for part in ("Snakefile", "rules", "workflow_scripts", "schemas", "report", "envs"):
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, copy_dir / part)
        else:
            shutil.copy(source, copy_dir / part)
    script = copy_dir / "workflow_scripts" / "train.py"
    script.touch()
    os.utime(script, (time.time() + 60, time.time() + 60))
    base = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(copy_dir / "Snakefile"),
        "--directory",
        str(tiny_run),
        "all_figures",
        *config,
        "-n",
        "--quiet",
        "rules",
    ]
    quiet = subprocess.run([*base, *TRIGGERS], capture_output=True, text=True, check=True)
    assert "Nothing to be done" in quiet.stdout + quiet.stderr
    # ... while Snakemake's default triggers (which include "code") would retrain every model
    # (no workflow profile: profiles/default sets the triggers above).
    default = subprocess.run(
        [*base, "--workflow-profile", "none"], capture_output=True, text=True, check=True
    )
    assert re.search(r"^train\s+8$", default.stdout + default.stderr, re.M)
    assert re.search(r"^train_initial\s+4$", default.stdout + default.stderr, re.M)
    # code_version invalidates every result on purpose.
    bumped = dry_run_counts(tiny_run, "all", *config, "--config", "code_version=2")
    assert bumped["train"] == 8 and bumped["train_initial"] == 4
    assert bumped["init_pool"] == 2 and bumped["query_stage1"] == 4
    # Adding a seed runs that seed's jobs and nothing else (figures aside).
    more = copy.deepcopy(TINY)
    more["experiments"]["tiny"]["seeds"] = [0, 1, 2]
    (tmp_path / "more.yaml").write_text(yaml.safe_dump(more))
    counts = dry_run_counts(tiny_run, "all", "--configfile", str(tmp_path / "more.yaml"))
    assert counts == Counter(
        {
            "init_pool": 1,
            "train_initial": 2,
            "train": 4,
            "query_stage0": 2,
            "query_stage1": 2,
            "all": 1,
        }
    )


def report_entries(html: str, variable: str) -> dict:
    """A JSON object that Snakemake's report.html assigns to a script variable."""
    match = re.search(rf"var {variable} = (\{{.*?\}});\n", html, re.S)
    assert match, f"no {variable} in report.html"
    return json.loads(match.group(1))


def embedded_file(entry: dict) -> str:
    """The text of a file the report embeds as a base64 data: URI."""
    return base64.b64decode(entry["data_uri"].split(";base64,", 1)[1]).decode()


@pytest.mark.slow
def test_results_of_other_settings_are_never_replaced_silently(tiny_run, tmp_path):
    """A settings change stops the run before any job and names the experiment; listing it in
    replace_results reruns exactly what the change affects."""
    workdir = tmp_path / "copy"
    shutil.copytree(tiny_run, workdir, symlinks=True)
    changed = copy.deepcopy(TINY)
    changed["experiments"]["tiny"]["vae"]["lr"] = 0.02  # only TA-VAAL's queries depend on it
    (workdir / "changed.yaml").write_text(yaml.safe_dump(changed))
    before = _mtimes(workdir)
    result = snakemake(
        workdir,
        "all",
        "--configfile",
        str(workdir / "changed.yaml"),
        "--cores",
        "2",
        *TRIGGERS,
        check=False,
    )
    assert result.returncode != 0
    text = result.stdout + result.stderr
    assert "finished results were made with other settings" in text
    assert "tiny (" in text and 'replace_results=["tiny"]' in text
    # tavaal's 2 seeds x 2 queries: their labeled files (stages 1-2) and scores, nothing else.
    assert "4 labeled.parquet, 4 scores.parquet" in text, text[-3000:]
    assert _mtimes(workdir) == before  # no job ran, nothing was touched
    # Replacing on purpose: only TA-VAAL's queries and what follows them rerun.
    counts = dry_run_counts(
        workdir,
        "all",
        "--configfile",
        str(workdir / "changed.yaml"),
        "--config",
        'replace_results=["tiny"]',
    )
    assert counts == Counter({"query_stage0": 2, "query_stage1": 2, "train": 4, "all": 1})


@pytest.mark.slow
def test_report_html(tiny_run):
    snakemake(
        tiny_run,
        "all_figures",
        "--configfile",
        str(tiny_run / "tiny.yaml"),
        "--report",
        "report.html",
    )
    html = (tiny_run / "report.html").read_text(errors="replace")
    assert "loss_vs_likelihood.png" in html
    categories = report_entries(html, "categories")
    results = report_entries(html, "results")
    # Figures and tables grouped by experiment; tables as html pages, not csv downloads.
    tables = {Path(path).name for path in categories["tiny"]["Tables"]}
    assert tables == {
        f"{name}.html"
        for name in (
            "accuracy",
            "aulc",
            "labels_to_reach",
            "sampling_time",
            "adversarial_health",
            "loss_vs_likelihood",
        )
    }
    assert not any(path.endswith(".csv") for path in results)
    pages = {
        Path(path).name: embedded_file(entry)
        for path, entry in results.items()
        if path.endswith(".html")
    }
    # Numbers recomputed from the summary (the csv files are rounded to 6 digits).
    summary = report.read_summary(tiny_run / "results/tiny/summary.parquet")
    accuracy = report.accuracy_table(summary)
    last = accuracy[accuracy["method"] == "tavaal"].iloc[-1]
    shown = f"{100 * last['accuracy_mean']:.1f} ± {100 * last['accuracy_std']:.1f}"
    difference = f"{round(100 * last['diff_mean'], 1) + 0.0:+.1f}".replace("-", "−")
    assert f"<td>{shown} ({difference})</td>" in pages["accuracy.html"]
    aulc = report.aulc_table(summary).set_index("method")
    assert f"<td>{aulc.loc['tavaal', 'diff_ci_low']:.4g}</td>" in pages["aulc.html"]
    seconds = report.sampling_time_table(summary).set_index("method")
    assert f"<td>{seconds.loc['random', 'mean_seconds']:.4g}</td>" in pages["sampling_time.html"]


@pytest.mark.slow
def test_readme_results_of_a_tiny_run(tiny_run, tmp_path):
    config = ["--configfile", str(tiny_run / "tiny.yaml")]
    snakemake(tiny_run, "readme_results", *config, "--cores", "1", *TRIGGERS)
    section_path = tiny_run / "results" / "readme_results.md"
    section = section_path.read_text()
    assert "## `tiny`" in section
    assert "methods: Random and TA-VAAL." in section
    # Spearman's rho as the loss-vs-likelihood figure computed it.
    table = pd.read_csv(tiny_run / "results/tiny/tables/loss_vs_likelihood.csv")
    rho = table.set_index("method").loc["tavaal", "spearman_rho"]
    shown = re.search(r"^\| TA-VAAL \| ([+−]\d\.\d\d) \| (?:< )?\d\.\d{3} \|", section, re.M)
    assert shown and float(shown.group(1).replace("−", "-")) == pytest.approx(rho, abs=0.006)
    readme = tmp_path / "default.md"
    shutil.copy(REPO / "docs/results/default.md", readme)
    assert cli.main(["readme-update", str(readme), str(section_path)]) == 0
    text = readme.read_text()
    assert section.strip() in text
    original = (REPO / "docs/results/default.md").read_text()
    assert (
        text.split("<!-- results:default:begin -->")[0]
        == original.split("<!-- results:default:begin -->")[0]
    )
    assert (
        text.split("<!-- results:default:end -->")[1]
        == original.split("<!-- results:default:end -->")[1]
    )


@pytest.mark.slow
def test_killed_run_leaves_nothing_accepted_and_resumes_identically(tiny_run, tmp_path):
    workdir = workdir_with_config(tmp_path / "killed", TINY, "tiny.yaml")
    config = ["--configfile", str(workdir / "tiny.yaml")]
    # One (method, seed) chain: the last index file of TA-VAAL, seed 0.
    target = "results/tiny/tavaal/seed0/stage2/labeled.parquet"
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        target,
        *config,
        "--cores",
        "2",
        *TRIGGERS,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    log = workdir / "logs/tiny/tavaal/seed0/stage0/query.log"
    deadline = time.time() + 600
    try:
        # Kill while the TA-VAAL query trains its VAE (1500 iterations: seconds of work left).
        while not (log.exists() and "training VAE" in log.read_text()):
            assert process.poll() is None, "snakemake ended before the query started"
            assert time.time() < deadline, "the query never started"
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    run = workdir / "results/tiny/tavaal/seed0"
    killed = {
        "results/tiny/tavaal/seed0/stage1/labeled.parquet",
        "results/tiny/tavaal/seed0/stage0/scores.parquet",
    }
    # Outputs are written atomically at the end, so none of the killed job's files exist ...
    assert not (run / "stage1/labeled.parquet").exists()
    assert not (run / "stage0/scores.parquet").exists()
    assert not list(run.glob("**/*.tmp"))
    # ... and Snakemake plans the job again.
    snakemake(workdir, "--unlock", *config)
    planned = planned_jobs(workdir, target, *config, "--rerun-incomplete")
    assert killed <= set().union(*(files(job.get("output", "")) for job in planned))
    snakemake(workdir, target, *config, "--cores", "2", "--rerun-incomplete", *TRIGGERS)
    pattern = "results/tiny/tavaal/seed0/stage*/labeled.parquet"
    resumed = tiny_files(workdir, pattern)
    assert len(resumed) == 2  # stages 1 and 2; stage 0's pool is the shared one
    assert resumed == tiny_files(tiny_run, pattern)


# ----------------------------------------------------- practitioner mode (human oracle)


def _fill_labels_from_truth(work: Path, truth_csv: Path, images: str) -> list[Path]:
    """Play the human: fill every requested labels file not filled yet from the hidden labels."""
    import csv

    with truth_csv.open() as handle:
        truth = {row["path"]: row["label"] for row in csv.DictReader(handle)}
    filled = []
    for request_json in sorted((work / "results").rglob("label_request.json")):
        request = json.loads(request_json.read_text())
        target = work / request["labels_file"]
        if target.exists():
            continue
        with (work / request["to_label"]).open() as handle:
            rows = list(csv.DictReader(handle))
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["sample_id", "path", "label"])
            for row in rows:
                relative = Path(row["path"]).relative_to(images).as_posix()
                writer.writerow([row["sample_id"], row["path"], truth[relative]])
        filled.append(target)
    return filled


def _simulated_run(work: Path, experiment: dict, folder: dict) -> Path:
    """The same protocol with a simulated oracle that is given the labels, run in this process
    (library calls, no Snakemake): the reference the human-labeled run must equal."""
    from tavaal.config import ExperimentConfig
    from tavaal.data import declare_image_folders, prepare_dataset
    from tavaal.stage import run_init_pool, run_query, run_train

    quiet = lambda line: None  # noqa: E731
    folders = {"known": {**folder, "labels": "toy/truth.csv"}}
    folders = {
        k: {**v, **{p: str(work / v[p]) for p in ("path", "test_labels", "labels")}}
        for k, v in folders.items()
    }
    declare_image_folders(folders)
    data, results = work / "sim_data", work / "sim_results"
    prepare_dataset("known", data, log=quiet)
    exp = ExperimentConfig.from_dict("sim", {**experiment, "dataset": "known", "oracle": {}})
    (method,) = exp.methods
    recipe = strategy_class(method).recipe
    for stage in range(exp.stages):
        labeled = run_file(results, "sim", method, 0, stage, "labeled.parquet")
        model = run_file(results, "sim", method, 0, stage, "model.pt")
        if stage == 0:
            run_init_pool(exp, 0, data, labeled, log=quiet)
        train_method = None if stage == 0 else method
        run_train(
            exp,
            recipe,
            0,
            stage,
            labeled,
            data,
            model,
            model.with_name("metrics.json"),
            method=train_method,
            device="cpu",
            log=quiet,
        )
        if stage + 1 < exp.stages:
            following = run_file(results, "sim", method, 0, stage + 1, "labeled.parquet")
            scores = run_file(results, "sim", method, 0, stage, "scores.parquet")
            run_query(
                exp,
                method,
                0,
                stage,
                labeled,
                model,
                data,
                following,
                scores,
                device="cpu",
                log=quiet,
            )
    return results


@pytest.mark.slow
def test_practitioner_three_stages_with_a_script_playing_the_human(tmp_path):
    """Issue 13: the workflow stops at each stage whose labels are missing, says which file to
    fill, continues once it is filled, and ends with the labeled sets, models and accuracies of
    a simulated oracle on the same images (whose labels it is given)."""
    from tavaal.data.toy_folder import TOY_CLASSES, write_toy_folder

    write_toy_folder(tmp_path / "toy", pool_per_class=10, test_per_class=4, seed=1)
    folder = {
        "path": "toy/images",
        "classes": list(TOY_CLASSES),
        "test_labels": "toy/test_labels.csv",
    }
    experiment = {
        "dataset": "shapes",
        "model": "small_cnn",
        "methods": ["entropy"],
        "seeds": [0],
        "initial_size": 8,
        "budget": 6,
        "stages": 3,
        "subset_size": 0,
        "oracle": {"kind": "human"},
        "train": {"epochs": 1, "batch_size": 16, "milestones": []},
    }
    extra = {
        "run_experiments": ["shapes"],
        "image_folders": {"shapes": folder},
        "experiments": {"shapes": experiment},
    }
    work = workdir_with_config(tmp_path, extra)
    # Target all: trainings, requests and exports, no figures (they are not what is tested).
    args = (
        "all",
        "--cores",
        "2",
        "--configfile",
        str(work / "config.yaml"),
        str(work / "extra.yaml"),
    )
    first = snakemake(work, *args)
    said = first.stderr
    pool_labels = "labels/shapes/stage0/seed0/labels.csv"
    assert "shapes, seed 0, stage 0 (entropy) waits for labels" in said
    assert pool_labels in said and "tavaal label results/shapes/stage0/seed0" in said
    stage0 = work / "results/shapes/stage0/seed0"
    assert (stage0 / "to_label.csv").exists() and (stage0 / "contact_sheet.png").exists()
    assert not list((work / "results/shapes").rglob("metrics.json"))

    # Half an answer is no answer: the run says how many are missing and trains nothing.
    (filled,) = _fill_labels_from_truth(work, work / "toy/truth.csv", "toy/images")
    lines = filled.read_text().splitlines()
    filled.write_text(
        "\n".join([lines[0], *(f"{line.rsplit(',', 1)[0]}," for line in lines[1:3]), *lines[3:]])
        + "\n"
    )
    partial = snakemake(work, *args, "-n")
    assert "2 of 8 samples still have no label" in partial.stderr
    assert "Nothing to be done" in partial.stdout + partial.stderr
    filled.unlink()

    for stage in range(3):
        assert len(_fill_labels_from_truth(work, work / "toy/truth.csv", "toy/images")) == 1
        run = snakemake(work, *args)
        waiting = re.findall(r"stage (\d) \((\w+)\) waits for labels", run.stderr)
        assert waiting == ([] if stage == 2 else [(str(stage + 1), "entropy")])

    simulated = _simulated_run(work, experiment, folder)
    for stage in range(3):
        mine = read_labeled(
            run_file(work / "results", "shapes", "entropy", 0, stage, "labeled.parquet")
        )
        theirs = read_labeled(run_file(simulated, "sim", "entropy", 0, stage, "labeled.parquet"))
        assert mine.table.equals(theirs.table), stage
        assert (mine.metadata["oracle"], theirs.metadata["oracle"]) == ("human", "simulated")
        accuracy = [
            json.loads(run_file(root, name, "entropy", 0, stage, "metrics.json").read_text())[
                "accuracy"
            ]
            for root, name in ((work / "results", "shapes"), (simulated, "sim"))
        ]
        assert accuracy[0] == accuracy[1] is not None
    export = work / "results/shapes/export/entropy/seed0/stage2"
    exported = pd.read_csv(export / "labeled.csv")
    assert list(exported.columns) == ["sample_id", "path", "label", "stage", "score"]
    assert len(exported) == 8 + 2 * 6 and exported["stage"].tolist() == sorted(exported["stage"])
    model = run_file(work / "results", "shapes", "entropy", 0, 2, "model.pt")
    assert (export / "model.pt").read_bytes() == model.read_bytes()
    assert "Nothing to be done" in snakemake(work, *args, "-n").stdout

    # A label changed after its stage was built stops the run before any job, naming the row.
    answer = work / "labels/shapes/entropy/seed0/stage1/labels.csv"
    lines = answer.read_text().splitlines()
    sample, path, label = lines[3].split(",")
    other = next(c for c in TOY_CLASSES if c != label)
    lines[3] = f"{sample},{path},{other}"
    answer.write_text("\n".join(lines) + "\n")
    changed = snakemake(work, *args, check=False)
    assert changed.returncode != 0
    request = "results/shapes/entropy/seed0/stage1/to_label.csv"
    assert f"sample {sample} (row 3 of {request}) now says '{other}'" in changed.stderr


def assert_jobs_query_as_the_library(exp, results: Path, data_dir: Path, out_dir: Path) -> None:
    """Seed 0's stage-1 picks of entropy, TA-VAAL and core-set (one of each kind of scorer) equal
    `tavaal.stage.run_query` run here on the jobs' own stage-0 index file and model."""
    from tavaal.stage import run_query

    for method in ("entropy", "tavaal", "coreset"):
        out = out_dir / method / "labeled.parquet"
        run_query(
            exp,
            method,
            0,
            0,
            run_file(results, exp.name, method, 0, 0, "labeled.parquet"),
            run_file(results, exp.name, method, 0, 0, "model.pt"),
            data_dir,
            out,
            out.with_name("scores.parquet"),
            device="cpu",
            log=lambda line: None,
        )
        job = read_labeled(run_file(results, exp.name, method, 0, 1, "labeled.parquet"))
        assert read_labeled(out).table.equals(job.table), method


@pytest.mark.slow
def test_every_method_runs_two_stages_on_224_pixel_images_read_from_their_files(
    tmp_path, monkeypatch
):
    """Issue 12: a class-per-folder tree of 240-330 px JPEGs, stored as files and decoded at
    224x224 by the jobs, with the ImageNet-style ResNet-18, random-resized crops and the VAE on
    a 16 px copy: both stages of every method through Snakemake, and the selections equal the
    library's on the workflow's own stage-0 models."""
    from tavaal.data import declare_image_folders
    from tavaal.data.toy_folder import write_class_folder_tree

    write_class_folder_tree(tmp_path / "tree", pool_per_class=5, test_per_class=2, seed=2)
    folder = {
        "path": "tree",
        "layout": "class_folders",
        "storage": "files",
        "image_size": 224,
    }
    methods = list_strategies()
    experiment = {
        "dataset": "tiny224",
        "model": "resnet18_imagenet",
        "methods": methods,
        "seeds": [0],
        "initial_size": 6,
        "budget": 3,
        "stages": 2,
        "subset_size": 0,
        "train": {
            "epochs": 1,
            "batch_size": 4,
            "milestones": [],
            "dropout": 0.3,
            # Small steps: SGD's default 0.1 on 4 images blows the logits up, and saturated
            # softmaxes would tie every uncertainty score.
            "optimizer": "adam",
            "lr": 0.0005,
            "augmentation": "resized_crop",
        },
        "vae": {
            "latent_dim": 4,
            "base_channels": 8,
            "hidden": 16,
            "disc_hidden": 16,
            "batch_size": 4,
            "iterations": 3,
            "input_size": 16,
        },
        "query": {"mc_samples": 2, "ensemble_size": 2, "inference_batch_size": 8},
    }
    extra = {
        "run_experiments": ["tiny224"],
        "image_folders": {"tiny224": folder},
        "experiments": {"tiny224": experiment},
    }
    work = workdir_with_config(tmp_path, extra)
    args = (
        "all",
        "--cores",
        "2",
        "--configfile",
        str(work / "config.yaml"),
        str(work / "extra.yaml"),
    )
    snakemake(work, *args, *TRIGGERS, timeout=1500)
    prepared = json.loads((work / "data/tiny224/meta.json").read_text())
    assert prepared["storage"] == "files" and prepared["input_shape"] == [3, 224, 224]
    assert not (work / "data/tiny224/x_train.npy").exists()

    results = work / "results"
    initial = read_labeled(run_file(results, "tiny224", "random", 0, 0, "labeled.parquet"))
    for method in methods:
        picked = read_labeled(run_file(results, "tiny224", method, 0, 1, "labeled.parquet"))
        ids = picked.indices.tolist()
        assert len(ids) == len(set(ids)) == 9, method
        kept = picked.table.loc[picked.table["stage_added"] == 0, "index"].tolist()
        assert kept == initial.indices.tolist(), method
        assert set(ids) <= set(range(15)), method
        for stage in (0, 1):
            metrics = json.loads(
                run_file(results, "tiny224", method, 0, stage, "metrics.json").read_text()
            )
            assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["labels"] == 6 + 3 * stage

    entropy = pd.read_parquet(run_file(results, "tiny224", "entropy", 0, 0, "scores.parquet"))
    assert entropy["score"].nunique() == len(entropy) == 9  # no ties: the scores decide
    # The jobs' queries equal the library's on the same model and pool (files decoded in this
    # process at one worker, in the jobs at two). Config paths are relative to the workflow's
    # working directory.
    monkeypatch.chdir(work)
    monkeypatch.setenv("TAVAAL_DECODE_WORKERS", "1")
    declare_image_folders({"tiny224": folder})
    exp = ExperimentConfig.from_dict("tiny224", experiment)
    assert_jobs_query_as_the_library(exp, results, work / "data", tmp_path / "again")
    rerun = snakemake(work, *args, *TRIGGERS, "-n")
    assert "Nothing to be done" in rerun.stdout + rerun.stderr


# ------------------------------------------------------------ segmentation end to end

SEG_SHAPES_E2E = {
    "dataset": "seg_shapes",
    "model": "drn_d_22_slim",
    "methods": list_strategies("segmentation"),
    "seeds": [0],
    "initial_size": 12,
    "budget": 6,
    "stages": 2,
    "subset_size": 48,
    "train": {
        "epochs": 1,
        "batch_size": 6,
        "milestones": [],
        "dropout": 0.3,
        # Small Adam steps: SGD's default 0.1 saturates the softmaxes, which tie every
        # uncertainty score.
        "optimizer": "adam",
        "lr": 0.0005,
        "crop_size": 48,
        "hflip": True,
    },
    "vae": {
        "latent_dim": 4,
        "base_channels": 8,
        "hidden": 16,
        "disc_hidden": 16,
        "batch_size": 8,
        "iterations": 3,
        "input_size": 16,
    },
    "query": {"mc_samples": 2, "ensemble_size": 2, "inference_batch_size": 16},
}


@pytest.mark.slow
def test_every_method_runs_two_stages_of_segmentation_on_seg_shapes(tmp_path):
    """Issue 11: the generated 64x64 segmentation set with the CPU-sized DRN, 48 px crops and
    the VAE on a 16 px copy: both stages of every method through Snakemake, mIoU metrics, the
    selections equal the library's on the workflow's own stage-0 models, and the report in
    mIoU with class entropies counted over the masks' pixels."""

    experiment = SEG_SHAPES_E2E
    methods = experiment["methods"]
    extra = {"run_experiments": ["seg"], "experiments": {"seg": experiment}}
    work = workdir_with_config(tmp_path, extra)
    args = (
        "all_figures",
        "--cores",
        "2",
        "--configfile",
        str(work / "config.yaml"),
        str(work / "extra.yaml"),
    )
    snakemake(work, *args, *TRIGGERS, timeout=1500)
    prepared = json.loads((work / "data/seg_shapes/meta.json").read_text())
    assert prepared["task"] == "segmentation"

    results = work / "results"
    initial = read_labeled(run_file(results, "seg", "random", 0, 0, "labeled.parquet"))
    assert len(initial.indices) == 12
    for method in methods:
        picked = read_labeled(run_file(results, "seg", method, 0, 1, "labeled.parquet"))
        ids = picked.indices.tolist()
        assert len(ids) == len(set(ids)) == 12 + 6, method
        kept = picked.table.loc[picked.table["stage_added"] == 0, "index"].tolist()
        assert kept == initial.indices.tolist(), method
        assert set(ids) <= set(range(600)), method
        for stage in (0, 1):
            metrics = json.loads(
                run_file(results, "seg", method, 0, stage, "metrics.json").read_text()
            )
            assert metrics["metric"] == "miou" and metrics["labels"] == 12 + 6 * stage
            assert 0.0 <= metrics["miou"] <= 1.0, (method, stage)
            iou = metrics["per_class_iou"]
            assert len(iou) == 4 and all(v is None or 0.0 <= v <= 1.0 for v in iou), method
            assert 0.0 <= metrics["pixel_accuracy"] <= 1.0, (method, stage)

    entropy = pd.read_parquet(run_file(results, "seg", "entropy", 0, 0, "scores.parquet"))
    assert entropy["score"].nunique() == len(entropy) == 48  # no ties: the scores decide
    # The jobs' queries equal the library's on the same model and pool. Config paths are
    # relative to the workflow's working directory.
    exp = ExperimentConfig.from_dict("seg", experiment)
    assert_jobs_query_as_the_library(exp, results, work / "data", tmp_path / "again")

    # The report: mIoU from the metrics files, pixel-class entropies from the masks.
    summary = pd.read_parquet(results / "seg" / "summary.parquet")
    assert len(summary) == 2 * len(methods) and set(summary["metric"]) == {"miou"}
    assert "accuracy" not in summary
    for row in summary.itertuples():
        metrics = json.loads(
            run_file(results, "seg", row.method, 0, row.stage, "metrics.json").read_text()
        )
        assert row.miou == metrics["miou"] and row.labels == metrics["labels"]
    masks = np.load(work / "data/seg_shapes/y_train.npy")
    stage0 = masks[initial.indices].ravel()
    expected = class_count_entropy(np.bincount(stage0[stage0 != 255], minlength=4))
    assert summary["selected_class_entropy"][summary["stage"] == 0].to_numpy() == pytest.approx(
        expected
    )
    table = pd.read_csv(results / "seg" / "tables" / "accuracy.csv")
    assert {"miou_mean", "miou_std"} <= set(table)
    assert "Test mIoU (%)" in (results / "seg" / "tables" / "accuracy.md").read_text()
    assert "target_miou" in pd.read_csv(results / "seg" / "tables" / "labels_to_reach.csv")
    for name in ("accuracy", "improvement", "class_entropy", "loss_vs_likelihood"):
        assert (results / "seg" / "figures" / f"{name}.png").stat().st_size > 0, name
    rerun = snakemake(work, *args, *TRIGGERS, "-n")
    assert "Nothing to be done" in rerun.stdout + rerun.stderr


def test_a_users_embedding_file_is_a_query_input_and_checked_before_any_job(tmp_path):
    """`embedding.source: file`: the file is an input of the queries of the methods that read
    it (a new file reruns them), and a bad one stops the dry run with its name and row."""
    features = np.random.default_rng(0).normal(size=(550, 3))  # moons: 550 train samples
    experiment = {
        "dataset": "moons",
        "model": "mlp",
        "methods": ["random", "typiclust"],
        "initial_size": 10,
        "budget": 5,
        "stages": 2,
        "subset_size": 0,
        "embedding": {"source": "file", "path": "features.npy"},
    }
    workdir = workdir_with_config(
        tmp_path, {"run_experiments": ["emb"], "experiments": {"emb": experiment}}
    )
    np.save(workdir / "features.npy", features)
    result = snakemake(workdir, "-n", "--configfile", str(workdir / "extra.yaml"))
    queries = re.findall(r"rule query_stage0:\n((?:    .*\n)+)", result.stdout)
    inputs = {
        ("typiclust" if "typiclust" in job else "random"): "features.npy" in job for job in queries
    }
    assert inputs == {"typiclust": True, "random": False}
    features[42, 1] = np.nan
    np.save(workdir / "features.npy", features)
    failed = snakemake(workdir, "-n", "--configfile", str(workdir / "extra.yaml"), check=False)
    assert failed.returncode != 0
    message = failed.stdout + failed.stderr
    assert "experiments.emb.embedding.path: features.npy: row 42 holds NaN" in message
    assert not (workdir / "results").exists()
