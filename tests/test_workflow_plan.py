"""tavaal.workflow_plan: what the workflow builds for a config, checked without Snakemake.

Each test plans a small config (validated by the workflow's schema, which fills the defaults)
and asserts the experiments, targets, job inputs and errors the .smk files forward. The dry-runs
in tests/test_workflow.py check that Snakemake builds its DAG from them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from snakemake.utils import validate

from tavaal.data.toy_folder import TOY_CLASSES, write_toy_folder
from tavaal.workflow_plan import (
    PlanError,
    WorkflowPaths,
    WorkflowPlan,
    alternation,
    only,
)

SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"

# Two-moons settings small enough to be valid; what a test needs is set on top.
MOONS = {
    "dataset": "moons",
    "model": "mlp",
    "methods": ["random", "tavaal"],
    "seeds": [0],
    "initial_size": 20,
    "budget": 10,
    "stages": 2,
    "subset_size": 60,
}
DIGITS = {
    "dataset": "digits",
    "model": "digits_cnn",
    "methods": ["entropy"],
    "initial_size": 100,
    "budget": 50,
    "stages": 2,
}
TABLE_EXTS = ("csv", "md", "html")


def config_of(experiments: dict, **top) -> dict:
    """A config as the Snakefile has it: results under `r`, data under `d`, defaults filled."""
    config = {"results_dir": "r/", "data_dir": "d", "experiments": experiments, **top}
    validate(config, str(SCHEMA))
    return config


def plan_of(experiments: dict, **top) -> WorkflowPlan:
    return WorkflowPlan(config_of(experiments, **top))


def under(root: str, names) -> list[str]:
    return [f"{root}/{name}" for name in names]


# ---------------------------------------------------------------- experiments and errors


def test_run_experiments_picks_the_experiments_in_its_order():
    experiments = {"a": MOONS, "b": DIGITS, "c": {**MOONS, "seeds": [1, 2]}}
    assert list(plan_of(experiments).experiments) == ["a", "b", "c"]
    plan = plan_of(experiments, run_experiments=["c", "a"])
    assert list(plan.experiments) == ["c", "a"]
    assert plan.experiments["c"].seeds == (1, 2)
    assert plan.experiments["c"].name == "c"
    # The queries of the longest experiment: stage 0 .. stages-2.
    assert plan_of({"a": MOONS, "long": {**MOONS, "stages": 4}}).query_stages == 3


@pytest.mark.parametrize(
    ("wanted", "message"),
    [
        (["a", "nope"], "run_experiments: 'nope' is not defined under experiments; defined: a, b"),
        ([], "run_experiments: the list is empty, nothing to build"),
    ],
)
def test_run_experiments_refuses_an_undefined_name_or_an_empty_list(wanted, message):
    # Set after the schema, which refuses an empty list itself.
    config = {**config_of({"a": MOONS, "b": DIGITS}), "run_experiments": wanted}
    with pytest.raises(PlanError) as error:
        WorkflowPlan(config)
    assert str(error.value) == message


def test_an_invalid_experiment_is_named_before_any_job():
    # Valid for the schema, refused by the experiment's own checks (tavaal.validation).
    config = config_of({"a": MOONS, "b": {**MOONS, "initial_size": 10_000}})
    with pytest.raises(
        PlanError, match=r"^invalid configuration: experiments\.b: initial_size 10000 "
    ):
        WorkflowPlan(config)
    # An experiment left out of run_experiments is not checked.
    assert list(WorkflowPlan({**config, "run_experiments": ["a"]}).experiments) == ["a"]


def test_wildcard_constraints_match_only_what_the_run_builds():
    plan = plan_of({"m": MOONS, "m_long": {**MOONS, "methods": ["lloss"]}, "d": DIGITS})
    constraints = plan.wildcard_constraints()
    # Longest first, so that m_long is not cut at m.
    assert constraints["experiment"] == "m_long|d|m"
    assert constraints["method"] == "entropy|random|tavaal|lloss"
    # plain is always there: plain_retraining's stage-0 reference.
    assert constraints["recipe"] == "ranking_ranker|margin_ranker|plain"
    assert constraints["dataset"] == "digits|moons"
    assert constraints["study"] == "(?!)"
    assert constraints["seed"] == constraints["stage"] == r"0|[1-9]\d*"
    assert alternation(["a.b", "a"]) == r"a\.b|a"
    assert only([]) == "(?!)"
    assert plan.experiment_recipes("m") == ["plain", "ranking_ranker"]


# ------------------------------------------------------------------------------ targets


def test_all_metrics_lists_every_training_with_stage_0_shared():
    plan = plan_of({"tiny": MOONS})
    assert plan.all_metrics() == [
        "r/tiny/stage0/seed0/plain/metrics.json",
        "r/tiny/random/seed0/stage1/metrics.json",
        "r/tiny/stage0/seed0/ranking_ranker/metrics.json",
        "r/tiny/tavaal/seed0/stage1/metrics.json",
    ]


def test_all_figures_of_a_tiny_two_moons_experiment():
    plan = plan_of({"tiny": MOONS})
    figures = ["accuracy", "class_entropy", "improvement", "discriminator_histogram"]
    figures += ["loss_vs_likelihood", "selection"]
    tables = ["accuracy", "aulc", "labels_to_reach", "sampling_time", "adversarial_health"]
    tables.append("loss_vs_likelihood")
    assert plan.all_figures() == [
        "r/tiny/summary.parquet",
        *under("r/tiny/figures", (f"{name}.png" for name in figures)),
        *under("r/tiny/tables", (f"{name}.{ext}" for name in tables for ext in TABLE_EXTS)),
    ]


def test_figures_follow_the_methods_the_queries_and_the_oracle():
    plan = plan_of(
        {
            # No baseline, no adversary, not in the plane, but a noisy oracle.
            "noisy": {**DIGITS, "oracle": {"noise": 0.2, "confusion": "any"}},
            # No query at all: no sampling time.
            "once": {**MOONS, "methods": ["random", "vaal"], "stages": 1},
        }
    )
    assert plan.experiment_figures("noisy") == [
        *under("r/noisy/figures", ("accuracy.png", "class_entropy.png")),
        *under(
            "r/noisy/tables",
            (
                f"{name}.{ext}"
                for name in ("accuracy", "aulc", "labels_to_reach", "sampling_time")
                for ext in TABLE_EXTS
            ),
        ),
        *under("r/noisy/tables", (f"oracle_errors.{ext}" for ext in TABLE_EXTS)),
    ]
    assert plan.experiment_figures("once") == [
        *under("r/once/figures", ("accuracy.png", "class_entropy.png", "improvement.png")),
        *under(
            "r/once/tables",
            (
                f"{name}.{ext}"
                for name in ("accuracy", "aulc", "labels_to_reach")
                for ext in TABLE_EXTS
            ),
        ),
    ]
    assert plan.oracle_noise("noisy") == 0.2


def test_diagnostics_are_for_planar_experiments_with_queries():
    plan = plan_of(
        {
            "vaal": {**MOONS, "methods": ["random", "vaal"]},
            "plain": {**MOONS, "methods": ["random", "entropy"]},
            "once": {**MOONS, "stages": 1},
            "digits": DIGITS,
        }
    )
    assert plan.diagnostic_files() == [
        "r/vaal/tables/selection_geometry.csv",
        "r/vaal/tables/selection_geometry.md",
        "r/vaal/figures/adversary_map.png",
        "r/plain/tables/selection_geometry.csv",
        "r/plain/tables/selection_geometry.md",
    ]


@pytest.mark.parametrize(("wanted", "shown"), [(-1, 2), (0, 0), (1, 1), (7, 2)])
def test_selection_stage_is_clamped_to_the_last_query(wanted, shown):
    plan = plan_of({"m": {**MOONS, "stages": 4}}, report={"selection_stage": wanted})
    assert plan.selection_stage("m") == shown
    assert plan.selection_input("m") == {
        "summary": "r/m/summary.parquet",
        "labeled": [
            f"r/m/{m}/seed0/stage{shown + 1}/labeled.parquet" for m in ("random", "tavaal")
        ],
        "models": [
            plan.paths.run_file("m", method, 0, shown, "model.pt")
            for method in ("random", "tavaal")
        ],
        "dataset": "d/moons",
    }


# ----------------------------------------------------------------------------- studies

BASE = {**DIGITS, "methods": ["random", "entropy"]}
STUDY = {"base": BASE, "variant": {**BASE, "initial_size": 30}}


def test_a_study_reads_its_experiments_summaries():
    plan = plan_of(STUDY, studies={"sizes": {"experiments": ["base", "variant"]}})
    assert plan.studies == {"sizes": ["base", "variant"]}
    assert plan.study_input("sizes") == ["r/base/summary.parquet", "r/variant/summary.parquet"]
    experiments = plan.study_experiments("sizes")
    assert [e["name"] for e in experiments] == ["base", "variant"]
    assert [e["initial_size"] for e in experiments] == [plan.experiments["base"].initial_size, 30]
    assert plan.all_figures()[-5:] == under(
        "r/studies/sizes", ("aulc.png", "curves.png", "table.csv", "table.md", "table.html")
    )
    assert plan.wildcard_constraints()["study"] == "sizes"


def test_a_study_of_an_experiment_not_run_is_refused():
    with pytest.raises(PlanError, match=r"^invalid configuration: studies\.sizes\.experiments"):
        plan_of(
            STUDY,
            run_experiments=["base"],
            studies={"sizes": {"experiments": ["base", "variant"]}},
        )


# ------------------------------------------------------------------------ job inputs


def test_query_input_reads_the_task_model_only_for_methods_that_use_it():
    plan = plan_of({"m": {**MOONS, "methods": ["random", "entropy", "tavaal"], "stages": 3}})
    assert plan.query_input("m", "random", "0", 0) == {
        "labeled": "r/m/stage0/seed0/labeled.parquet",
        "dataset": "d/moons",
    }
    assert plan.query_input("m", "entropy", "0", 0) == {
        "labeled": "r/m/stage0/seed0/labeled.parquet",
        "dataset": "d/moons",
        "model": "r/m/stage0/seed0/plain/model.pt",
    }
    assert plan.query_input("m", "tavaal", "0", 1) == {
        "labeled": "r/m/tavaal/seed0/stage1/labeled.parquet",
        "dataset": "d/moons",
        "model": "r/m/tavaal/seed0/stage1/model.pt",
    }


def test_an_embedding_file_is_an_input_of_the_methods_that_read_it(tmp_path):
    embedding = tmp_path / "features.npy"
    np.save(embedding, np.zeros((1258, 4), dtype=np.float32))
    exp = {
        **DIGITS,
        "methods": ["entropy", "typiclust"],
        "embedding": {"source": "file", "path": str(embedding)},
    }
    plan = plan_of({"e": exp})
    assert plan.query_input("e", "typiclust", "1", 1)["embedding"] == str(embedding)
    assert "embedding" not in plan.query_input("e", "entropy", "1", 1)


def test_training_jobs_read_their_labeled_set_and_their_recipe():
    plan = plan_of({"m": MOONS})
    assert plan.train_initial_input("m", "0") == {
        "labeled": "r/m/stage0/seed0/labeled.parquet",
        "dataset": "d/moons",
    }
    assert plan.train_input("m", "tavaal", "0", 1) == {
        "labeled": "r/m/tavaal/seed0/stage1/labeled.parquet",
        "dataset": "d/moons",
    }
    # train names its method; train_initial and retrain_plain name their recipe.
    assert plan.training_recipe("tavaal", None).name == "ranking_ranker"
    assert plan.training_recipe(None, "plain").name == "plain"
    assert plan.training_settings("m", "tavaal", None) != plan.training_settings("m", None, "plain")
    assert plan.train_estimate("m", None, "plain", 0).mem_mb > 0
    assert plan.training_threads("m") == plan.dataset_threads("m") == plan.train_gpus("m") == 1


def test_aggregate_reads_every_run_and_names_each_metrics_method():
    plan = plan_of({"m": {**MOONS, "seeds": [0, 1]}})
    inputs = plan.aggregate_input("m")
    assert inputs["metrics"][:2] == [
        "r/m/stage0/seed0/plain/metrics.json",
        "r/m/random/seed0/stage1/metrics.json",
    ]
    assert len(inputs["metrics"]) == 2 * 2 * 2
    assert plan.aggregate_metric_methods("m") == ["random"] * 4 + ["tavaal"] * 4
    assert inputs["labeled"] == [
        f"r/m/{method}/seed{seed}/stage1/labeled.parquet"
        for method in ("random", "tavaal")
        for seed in (0, 1)
    ]
    assert inputs["scores"] == [
        f"r/m/{method}/seed{seed}/stage0/scores.parquet"
        for method in ("random", "tavaal")
        for seed in (0, 1)
    ]
    assert inputs["dataset"] == "d/moons"
    assert plan.histogram_input("m") == {
        "summary": "r/m/summary.parquet",
        "scores": [
            "r/m/tavaal/seed0/stage0/scores.parquet",
            "r/m/tavaal/seed1/stage0/scores.parquet",
        ],
    }


def test_plain_retraining_compares_the_non_plain_methods_with_a_plain_classifier():
    plan = plan_of(
        {
            "mixed": {**MOONS, "methods": ["random", "entropy", "lloss"]},
            "plain_only": {**MOONS, "methods": ["random", "entropy"]},
        }
    )
    assert plan.retrained_methods("mixed") == ["lloss"]
    assert plan.plain_retraining_input("mixed") == {
        "own": [
            "r/mixed/stage0/seed0/margin_ranker/metrics.json",
            "r/mixed/lloss/seed0/stage1/metrics.json",
        ],
        "plain": [
            "r/mixed/stage0/seed0/plain/metrics.json",
            "r/mixed/lloss/seed0/stage1/plain/metrics.json",
        ],
        "reference": [
            "r/mixed/stage0/seed0/plain/metrics.json",
            "r/mixed/random/seed0/stage1/metrics.json",
        ],
    }
    assert plan.plain_retraining_methods("mixed") == ["lloss", "lloss"]
    assert plan.plain_retraining_reference("mixed") == "random"
    assert plan.plain_retraining_files() == [
        *under("r/mixed/tables", (f"plain_retraining.{ext}" for ext in TABLE_EXTS)),
        "r/mixed/figures/plain_retraining.png",
    ]
    no_baseline = plan_of({"l": {**MOONS, "methods": ["lloss"]}})
    assert no_baseline.plain_retraining_input("l")["reference"] == []
    assert no_baseline.plain_retraining_reference("l") is None


def test_paths_keep_the_wildcards_for_snakemake():
    paths = WorkflowPaths("res/", "dat")
    assert paths.stage_file("{stage}", "model.pt") == (
        "res/{experiment}/{method}/seed{seed}/stage{stage}/model.pt"
    )
    assert (
        paths.stage0_file("labeled.parquet") == "res/{experiment}/stage0/seed{seed}/labeled.parquet"
    )
    assert paths.stage0_file("model.pt") == "res/{experiment}/stage0/seed{seed}/{recipe}/model.pt"
    # Snakemake's per-job benchmark files live apart from the benchmark scripts in benchmarks/.
    assert paths.stage_benchmark(2, "query") == (
        "job_benchmarks/{experiment}/{method}/seed{seed}/stage2/query.tsv"
    )
    assert paths.stage_log(1, "train") == "logs/{experiment}/{method}/seed{seed}/stage1/train.log"
    assert paths.export == "res/{experiment}/export/{method}/seed{seed}/stage{stage}"
    assert paths.study_file("table.md") == "res/studies/{study}/table.md"


# ------------------------------------------------------------- checks before any job


def test_missing_raw_files_are_refused_only_where_results_are_checked(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    config = config_of(
        {"f": {"dataset": "fashion_mnist", "model": "small_cnn"}},
        data_dir=str(tmp_path / "data"),
        raw_sources={"fashion_mnist": str(empty)},
    )
    # Cluster jobs parse the workflow again: only the main process looks at the disk.
    assert list(WorkflowPlan(config).experiments) == ["f"]
    with pytest.raises(PlanError, match=str(empty)):
        WorkflowPlan(config, check_results=True)


# ---------------------------------------------------- practitioner mode (human oracle)


def test_a_human_labeled_run_waits_for_its_initial_labels(tmp_path):
    folder = write_toy_folder(tmp_path / "toy", pool_per_class=4, test_per_class=1, seed=0)
    image_folders = {
        "plan_shapes": {
            "path": str(folder.images),
            "classes": list(TOY_CLASSES),
            "image_size": 16,
            "test_labels": str(folder.test_labels),
        }
    }
    human = {
        "dataset": "plan_shapes",
        "model": "small_cnn",
        "methods": ["random", "entropy"],
        "seeds": [0],
        "initial_size": 3,
        "budget": 3,
        "stages": 2,
        "oracle": {"kind": "human", "labels_dir": str(tmp_path / "labels")},
    }
    plan = plan_of(
        {"shapes": human, "moons": MOONS},
        image_folders=image_folders,
        results_dir=str(tmp_path / "results"),
    )
    assert plan.human == plan.human_asked_pool == ["shapes"]
    assert plan.simulated == ["moons"]
    assert plan.human_given_pool == []
    request = tmp_path / "results/shapes/stage0/seed0"
    labels = tmp_path / "labels/shapes/stage0/seed0/labels.csv"
    # The shared initial pool's request, once for both methods; no training yet.
    assert plan.human_targets() == [f"{request}/to_label.csv", f"{request}/contact_sheet.png"]
    [line] = plan.waiting_for_labels()
    assert line.startswith("shapes, seed 0, stage 0 (random, entropy) waits for labels: ")
    assert str(labels) in line
    assert plan.labels_file("shapes", None, "0", 0) == str(labels)
    assert plan.labels_file("shapes", "entropy", "0", 1) == str(
        tmp_path / "labels/shapes/entropy/seed0/stage1/labels.csv"
    )
    # No summary of a human-labeled experiment until every run has its labels.
    assert not plan.human_complete("shapes")
    assert not any(
        path.startswith(str(tmp_path / "results/shapes/summary")) for path in plan.all_figures()
    )
    assert "r/moons/summary.parquet" not in plan.all_figures()
    assert f"{tmp_path}/results/moons/summary.parquet" in plan.all_figures()
    # The true loss needs the pool's labels, which a person gives only for the selected images.
    assert not plan.pool_labels_known("shapes")
    assert plan.take_labels_input("shapes", "entropy", "0", 1) == {
        "request": f"{tmp_path}/results/shapes/entropy/seed0/stage1/label_request.json",
        "to_label": f"{tmp_path}/results/shapes/entropy/seed0/stage1/to_label.csv",
        "labels": str(tmp_path / "labels/shapes/entropy/seed0/stage1/labels.csv"),
        "previous": f"{tmp_path}/results/shapes/stage0/seed0/labeled.parquet",
        "scores": f"{tmp_path}/results/shapes/entropy/seed0/stage0/scores.parquet",
    }
