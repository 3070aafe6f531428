# The Snakemake side of the workflow's decisions, which tavaal.workflow_plan makes without
# Snakemake: the plan of this config, the names the other .smk files read, the wildcard
# constraints, and input functions that hand a job's wildcard values to the plan (no rules here).

import sys

from snakemake.exceptions import WorkflowError

# The Snakefile's onstart/onsuccess hooks take and release the results lock; retrain_plain's
# recipe is PLAIN's.
from tavaal.errors import ConfigError
from tavaal.results_guard import release_results_lock, take_results_lock
from tavaal.training import PLAIN
from tavaal.workflow_plan import (
    RUN_LOGS,
    STAGE0_BENCH,
    STAGE0_LOGS,
    PlanError,
    WorkflowPlan,
    image_folder_mb,
)
# A rule's own constraint to exactly some names (e.g. the human-labeled experiments).
from tavaal.workflow_plan import only as _only

# Checked before any job: the config, the labels files people gave and, in the main process
# only (cluster jobs parse this file again), the raw data and the results already finished.
try:
    PLAN = WorkflowPlan(config, check_results=workflow.is_main_process)
except PlanError as exc:
    raise WorkflowError(str(exc)) from None

PATHS = PLAN.paths
RESULTS = PATHS.results
DATA = PATHS.data
REPORT = PLAN.report
CODE_VERSION = PLAN.code_version
STAGE0 = PATHS.stage0
EXP_DIR = PATHS.experiment_dir
EXPORT = PATHS.export
# Software of every job (relative to the rules/ files); used with --sdm conda only.
SOFTWARE = "../envs/tavaal.yaml"

EXPERIMENTS = PLAN.experiments
IMAGE_FOLDERS = PLAN.image_folders
STUDIES = PLAN.studies
QUERY_STAGES = PLAN.query_stages
HUMAN = PLAN.human
SIMULATED = PLAN.simulated
HUMAN_ASKED_POOL = PLAN.human_asked_pool
HUMAN_GIVEN_POOL = PLAN.human_given_pool

stage_file = PATHS.stage_file
stage_log = PATHS.stage_log
stage_benchmark = PATHS.stage_benchmark
stage0_file = PATHS.stage0_file
figure = PATHS.figure
table = PATHS.table
study_file = PATHS.study_file
image_folder_state = PLAN.image_folder_state
has_queries = PLAN.has_queries
adversarial_methods = PLAN.adversarial_methods
all_metrics = PLAN.all_metrics
all_figures = PLAN.all_figures
diagnostic_files = PLAN.diagnostic_files
plain_retraining_files = PLAN.plain_retraining_files
waiting_for_labels = PLAN.waiting_for_labels


wildcard_constraints:
    **PLAN.wildcard_constraints(),


# Said before any job (also on a dry-run or when nothing is left to do) and again at the end.
if workflow.is_main_process:
    for _line in waiting_for_labels():
        print(f"tavaal: {_line}", file=sys.stderr)


# ------------------------------------------------------------------------ input functions
# Each hands the job's wildcard values to the plan; Snakemake calls them per job.


def _of_experiment(decide):
    """An input, params, threads or resources function of the experiment wildcard alone."""
    return lambda wildcards: decide(wildcards.experiment)


def _stage_number(wildcards):
    # Stage 0's training and labeling jobs have no stage wildcard.
    return int(wildcards.get("stage", 0))


dataset_input = _of_experiment(PLAN.dataset_dir)
pool_settings = _of_experiment(PLAN.pool_settings)
initial_labels_input = _of_experiment(PLAN.initial_labels_input)
dataset_threads = _of_experiment(PLAN.dataset_threads)
training_threads = _of_experiment(PLAN.training_threads)
train_gpus = _of_experiment(PLAN.train_gpus)
aggregate_input = _of_experiment(PLAN.aggregate_input)
aggregate_metric_methods = _of_experiment(PLAN.aggregate_metric_methods)
summary_input = _of_experiment(PATHS.summary_file)
histogram_input = _of_experiment(PLAN.histogram_input)
loss_likelihood_input = _of_experiment(PLAN.loss_likelihood_input)
selection_input = _of_experiment(PLAN.selection_input)
adversary_map_input = _of_experiment(PLAN.adversary_map_input)
selection_geometry_input = _of_experiment(PLAN.selection_geometry_input)
experiment_params = _of_experiment(PLAN.experiment_params)
first_seed = _of_experiment(PLAN.first_seed)
last_query = _of_experiment(PLAN.last_query_stage)
shown_selection_stage = _of_experiment(PLAN.selection_stage)
plain_retraining_input = _of_experiment(PLAN.plain_retraining_input)
plain_retraining_methods = _of_experiment(PLAN.plain_retraining_methods)
plain_retraining_reference = _of_experiment(PLAN.plain_retraining_reference)
oracle_noise = _of_experiment(PLAN.oracle_noise)


def study_input(wildcards):
    return PLAN.study_input(wildcards.study)


def study_experiments(wildcards):
    return PLAN.study_experiments(wildcards.study)


def query_settings(wildcards):
    return PLAN.query_settings(wildcards.experiment, wildcards.method)


def recipe_training_settings(wildcards):
    w = wildcards
    return PLAN.training_settings(w.experiment, w.get("method"), w.get("recipe"))


def train_input(wildcards):
    w = wildcards
    return PLAN.train_input(w.experiment, w.method, w.seed, int(w.stage))


def train_initial_input(wildcards):
    return PLAN.train_initial_input(wildcards.experiment, wildcards.seed)


def _train_estimate(wildcards):
    # train_initial and retrain_plain name their recipe, train has its method's.
    w = wildcards
    return PLAN.train_estimate(w.experiment, w.get("method"), w.get("recipe"), _stage_number(w))


def train_mem_mb(wildcards):
    return _train_estimate(wildcards).mem_mb


def train_runtime(wildcards):
    return _train_estimate(wildcards).runtime_minutes


def query_input(stage):
    """Input function of the query of `stage` (one query rule per stage index)."""
    return lambda wildcards: PLAN.query_input(
        wildcards.experiment, wildcards.method, wildcards.seed, stage
    )


def query_mem_mb(stage):
    def mem_mb(wildcards):
        return PLAN.query_estimate(wildcards.experiment, wildcards.method, stage).mem_mb

    return mem_mb


def query_runtime(stage):
    def runtime(wildcards):
        return PLAN.query_estimate(wildcards.experiment, wildcards.method, stage).runtime_minutes

    return runtime


# Practitioner mode: a person's labels file is `ancient`: only its contents count, checked by
# the plan (label_progress) and the job; a re-save without changes reruns nothing.


def labels_input(wildcards):
    w = wildcards
    return ancient(PLAN.labels_file(w.experiment, w.get("method"), w.seed, _stage_number(w)))


def take_labels_input(wildcards):
    w = wildcards
    files = PLAN.take_labels_input(w.experiment, w.method, w.seed, int(w.stage))
    return {**files, "labels": ancient(files["labels"])}


def export_input(wildcards):
    w = wildcards
    return PLAN.export_input(w.experiment, w.method, w.seed, int(w.stage))
