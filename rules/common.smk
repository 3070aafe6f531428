# Helpers shared by the other .smk files: the validated experiments, path patterns, target
# lists, named input functions and the global wildcard constraints (no rules here).

import re
import sys

from snakemake.exceptions import WorkflowError

from tavaal import layout
from tavaal.config import ExperimentConfig
from tavaal.data import (
    check_raw_sources,
    declare_image_folders,
    known_input_shape,
    known_split_sizes,
)
from tavaal.data.image_folder import check_unread_images, folder_state
from tavaal.errors import ConfigError, TavaalError
from tavaal.practitioner import label_progress
from tavaal.report.study import check_study
from tavaal.resources import job_threads, query_estimate, train_estimate, train_threads
from tavaal.results_guard import (
    check_image_folders,
    check_results_match,
    release_results_lock,
    take_results_lock,
)
from tavaal.strategies import method_settings, strategy_class, trains_discriminator
from tavaal.training import PLAIN, get_recipe, training_settings
from tavaal.validation import check_experiment

RESULTS = config["results_dir"].rstrip("/")
DATA = config["data_dir"].rstrip("/")
REPORT = config["report"]
# A param of every compute job: bumping it reruns them all (docs/workflow.md, "Rerun policy").
CODE_VERSION = str(config["code_version"])

# Jobs of one (experiment, method, seed) run live under RUN; stage folders below it. Stage 0 is
# shared (tavaal.layout): the initial pool per (experiment, seed), its model per training recipe.
RUN = f"{RESULTS}/{{experiment}}/{{method}}/seed{{seed}}"
RUN_LOGS = "logs/{experiment}/{method}/seed{seed}"
# Snakemake's per-job benchmark files: their own top-level folder, apart from the benchmark
# scripts' source in benchmarks/ (an experiment may be named like anything there).
RUN_BENCH = "job_benchmarks/{experiment}/{method}/seed{seed}"
STAGE0 = f"{RESULTS}/{{experiment}}/stage0/seed{{seed}}"
STAGE0_LOGS = "logs/{experiment}/stage0/seed{seed}"
STAGE0_BENCH = "job_benchmarks/{experiment}/stage0/seed{seed}"
EXP_DIR = f"{RESULTS}/{{experiment}}"
EXPORT = layout.EXPORT_FOLDER.format(
    results=RESULTS, experiment="{experiment}", method="{method}", seed="{seed}", stage="{stage}"
)
# Software of every job (relative to the rules/ files); used with --sdm conda only.
SOFTWARE = "../envs/tavaal.yaml"

# Queries the two-moons adversary map can replay (VAAL and TA-VAAL themselves).
REPLAYABLE_ADVERSARIES = ("vaal", "tavaal")
# Datasets whose samples are points in the plane (TA-VAAL Fig. 1 selection plot).
PLANAR_DATASETS = ("moons",)


def _selected_experiment_names():
    defined = list(config["experiments"])
    wanted = config.get("run_experiments")
    if wanted is None:
        return defined
    unknown = [name for name in wanted if name not in config["experiments"]]
    if unknown:
        raise WorkflowError(
            f"run_experiments: {unknown[0]!r} is not defined under experiments; "
            f"defined: {', '.join(defined)}"
        )
    if not wanted:
        raise WorkflowError("run_experiments: the list is empty, nothing to build")
    return list(wanted)


def _load_experiments():
    experiments = {}
    for name in _selected_experiment_names():
        try:
            experiments[name] = ExperimentConfig.from_dict(name, config["experiments"][name])
            check_experiment(experiments[name], data_dir=DATA)
        except ConfigError as exc:
            raise WorkflowError(f"invalid configuration: {exc}") from None
    return experiments


# Practitioners' own image folders (image_folders.<name>), checked and counted before any job:
# experiments name them as datasets.
try:
    IMAGE_FOLDERS = declare_image_folders(config["image_folders"])
except TavaalError as exc:
    raise WorkflowError(f"invalid configuration: {exc}") from None
# name -> ExperimentConfig, for the experiments this run builds (validated before any job).
EXPERIMENTS = _load_experiments()

_FOLDER_STATES = {}


def image_folder_state(name):
    """The image folder `name` against its prepared copy (tavaal.data.image_folder.folder_state),
    listed once per process: the guard below and the prepare job's params read it."""
    if name not in _FOLDER_STATES:
        _FOLDER_STATES[name] = folder_state(IMAGE_FOLDERS[name], DATA)
    return _FOLDER_STATES[name]


# Before any job: the raw folders still to read hold their files, the images no prepare has read
# yet decode, and finished results made with other settings or from another version of an image
# folder are never replaced silently (tavaal.results_guard). Jobs that Snakemake runs in their
# own process (cluster jobs) parse this file again; the main process has already checked.
if workflow.is_main_process:
    try:
        check_raw_sources((e.dataset for e in EXPERIMENTS.values()), DATA, config["raw_sources"])
        used_folders = sorted({e.dataset for e in EXPERIMENTS.values()} & set(IMAGE_FOLDERS))
        for name in used_folders:
            check_unread_images(image_folder_state(name))
        replace = config.get("replace_results") or []
        check_results_match(RESULTS, EXPERIMENTS, replace)
        check_image_folders(
            RESULTS,
            {name: image_folder_state(name) for name in used_folders},
            {name: entry.get("dataset") for name, entry in config["experiments"].items()},
            replace,
        )
    except TavaalError as exc:
        raise WorkflowError(str(exc)) from None
# name -> experiment names of each study (studies.<name>.experiments), checked before any job.
def _load_studies():
    studies = {}
    for name, study in (config.get("studies") or {}).items():
        try:
            check_study(name, study["experiments"], EXPERIMENTS, REPORT["baseline"])
        except ConfigError as exc:
            raise WorkflowError(f"invalid configuration: {exc}") from None
        studies[name] = list(study["experiments"])
    return studies


STUDIES = _load_studies()
# Queries happen at stages 0 .. stages-2, one query_stage<k> per stage index k.
QUERY_STAGES = max(exp.stages for exp in EXPERIMENTS.values()) - 1


def _alternation(names):
    # Longest first so that e.g. cifar10_imb10 is not cut at cifar10.
    return "|".join(re.escape(name) for name in sorted(set(names), key=lambda n: (-len(n), n)))


def _only(names):
    """A wildcard constraint matching exactly `names` (nothing when there is none)."""
    names = list(names)
    return _alternation(names) if names else r"(?!)"


# Who labels: a simulated oracle answers inside the query rules; a person (oracle kind human,
# rules/practitioner.smk) answers requests the workflow stops at.
HUMAN = [name for name, exp in EXPERIMENTS.items() if exp.oracle.human]
SIMULATED = [name for name in EXPERIMENTS if name not in HUMAN]
HUMAN_ASKED_POOL = [name for name in HUMAN if not EXPERIMENTS[name].oracle.initial_labels]
HUMAN_GIVEN_POOL = [name for name in HUMAN if EXPERIMENTS[name].oracle.initial_labels]


def recipe(method):
    return strategy_class(method).recipe


def experiment_recipes(experiment):
    """Training recipes of an experiment's methods, each once, in the order of the methods."""
    return list(dict.fromkeys(recipe(m).name for m in EXPERIMENTS[experiment].methods))


wildcard_constraints:
    experiment=_alternation(EXPERIMENTS),
    method=_alternation(m for exp in EXPERIMENTS.values() for m in exp.methods),
    # plain also for the target plain_retraining: its stage-0 reference is the shared plain
    # model, wanted even where no method of the experiment trains plain.
    recipe=_alternation(
        [r for name in EXPERIMENTS for r in experiment_recipes(name)] + [PLAIN.name]
    ),
    dataset=_alternation(exp.dataset for exp in EXPERIMENTS.values()),
    seed=r"0|[1-9]\d*",
    stage=r"0|[1-9]\d*",
    study=_alternation(STUDIES) if STUDIES else r"(?!)",


# ---------------------------------------------------------------------------------- paths


def stage_file(stage, name):
    """Pattern of a file of one stage; `stage` is an int or the "{stage}" wildcard."""
    return f"{RUN}/stage{stage}/{name}"


def stage_log(stage, name):
    return f"{RUN_LOGS}/stage{stage}/{name}.log"


def stage_benchmark(stage, name):
    return f"{RUN_BENCH}/stage{stage}/{name}.tsv"


def run_file(experiment, method, seed, stage, name):
    """The file of (experiment, method, seed, stage), wherever it lives (stage 0 is shared)."""
    return str(layout.run_file(RESULTS, experiment, method, seed, stage, name))


def stage0_file(name):
    """Pattern of a shared stage-0 file: the initial pool, or a recipe's model and metrics."""
    return f"{STAGE0}/{name}" if name == "labeled.parquet" else f"{STAGE0}/{{recipe}}/{name}"


def dataset_dir(experiment):
    return f"{DATA}/{EXPERIMENTS[experiment].dataset}"


def figure(name):
    return f"{EXP_DIR}/figures/{name}.png"


def table(name, ext):
    return f"{EXP_DIR}/tables/{name}.{ext}"


# ------------------------------------------------------------------ what each experiment has


def uses_task_model(method):
    return strategy_class(method).uses_task_model


def adversarial_methods(experiment):
    """Methods whose queries train a discriminator (its figures and health table)."""
    return [
        m for m in EXPERIMENTS[experiment].methods if trains_discriminator(strategy_class(m))
    ]


def replayable_adversaries(experiment):
    return [m for m in EXPERIMENTS[experiment].methods if m in REPLAYABLE_ADVERSARIES]


def last_query_stage(experiment):
    return EXPERIMENTS[experiment].stages - 2


def has_queries(experiment):
    return last_query_stage(experiment) >= 0


def has_baseline(experiment):
    methods = EXPERIMENTS[experiment].methods
    return REPORT["baseline"] in methods and len(methods) > 1


def has_noisy_oracle(experiment):
    return EXPERIMENTS[experiment].oracle.noise > 0


def is_planar(experiment):
    return EXPERIMENTS[experiment].dataset in PLANAR_DATASETS


def image_folder_mb(dataset):
    """Megabytes of a prepared image folder's arrays (pool and test, uint8 RGB)."""
    c, h, w = known_input_shape(dataset)
    n_train, n_test = known_split_sizes(dataset)
    return (n_train + n_test) * c * h * w // 2**20 + 1


def pool_labels_known(experiment):
    folder = IMAGE_FOLDERS.get(EXPERIMENTS[experiment].dataset)
    return folder is None or folder.labels is not None


# --------------------------------------------------------- practitioner mode (human oracle)
# Before any job: how far each run can go with the labels people have given (tavaal.practitioner
# .label_progress); invalid labels files, or ones changed after a stage used them, stop here.


def _label_progress():
    progress = {}
    for name in HUMAN:
        exp = EXPERIMENTS[name]
        for method in exp.methods:
            for seed in exp.seeds:
                try:
                    progress[name, method, seed] = label_progress(exp, RESULTS, method, seed)
                except TavaalError as exc:
                    raise WorkflowError(f"labels: {exc}") from None
    return progress


LABEL_PROGRESS = _label_progress()


def export_folder(experiment, method, seed, stage):
    return layout.EXPORT_FOLDER.format(
        results=RESULTS, experiment=experiment, method=method, seed=seed, stage=stage
    )


def human_targets():
    """Per human-labeled run: the trainings its labels allow, the request it waits for (with its
    contact sheet) and the export of its last labeled stage."""
    files = []
    for (name, method, seed), progress in LABEL_PROGRESS.items():
        files += [run_file(name, method, seed, k, "metrics.json") for k in range(progress.ready)]
        if progress.waiting_for is not None:
            folder = layout.request_folder(RESULTS, name, method, seed, progress.ready)
            files += [str(folder / "to_label.csv"), str(folder / "contact_sheet.png")]
        if progress.ready:
            export = export_folder(name, method, seed, progress.ready - 1)
            files += [f"{export}/labeled.csv", f"{export}/model.pt"]
    return list(dict.fromkeys(files))


def human_complete(experiment):
    """Every run of the experiment has all its labels, and its folder has a test split: the
    summary, figures and tables can be made."""
    folder = IMAGE_FOLDERS[EXPERIMENTS[experiment].dataset]
    runs = [p for (name, _, _), p in LABEL_PROGRESS.items() if name == experiment]
    return folder.test_labels is not None and all(p.waiting_for is None for p in runs)


def waiting_for_labels():
    """One line per labels file the runs wait for (the shared initial pool's once): which
    runs, what to label, where, and how."""
    waiting = {}
    for (name, method, seed), p in LABEL_PROGRESS.items():
        if p.waiting_for is not None:
            runs = waiting.setdefault(p.waiting_for, (name, seed, p.ready, p.note, []))[4]
            runs.append(method)
    return [
        f"{name}, seed {seed}, stage {stage} ({', '.join(methods)}) waits for labels: {note}"
        for name, seed, stage, note, methods in waiting.values()
    ]


# Said before any job (also on a dry-run or when nothing is left to do) and again at the end.
if workflow.is_main_process:
    for _line in waiting_for_labels():
        print(f"tavaal: {_line}", file=sys.stderr)


def labels_input(wildcards):
    """The person's labels file of a request (ancient: only its contents count, checked by
    label_progress and the job; a re-save without changes reruns nothing)."""
    exp = EXPERIMENTS[wildcards.experiment]
    stage = int(wildcards.get("stage", 0))
    method = wildcards.get("method", layout.ALL_METHODS)
    path = layout.labels_file(exp.oracle.labels_dir, exp.name, method, wildcards.seed, stage)
    return ancient(str(path))


def take_labels_input(wildcards):
    """A later stage's request and answers, the labeled set and scores of the query that asked."""
    w, stage = wildcards, int(wildcards.stage)
    return {
        "request": stage_file("{stage}", "label_request.json").format(**w),
        "to_label": stage_file("{stage}", "to_label.csv").format(**w),
        "labels": labels_input(w),
        "previous": run_file(w.experiment, w.method, w.seed, stage - 1, "labeled.parquet"),
        "scores": run_file(w.experiment, w.method, w.seed, stage - 1, "scores.parquet"),
    }


def initial_labels_input(wildcards):
    return {
        "labels": EXPERIMENTS[wildcards.experiment].oracle.initial_labels,
        "dataset": dataset_dir(wildcards.experiment),
    }


def export_input(wildcards):
    w, stage = wildcards, int(wildcards.stage)
    return {
        "labeled": run_file(w.experiment, w.method, w.seed, stage, "labeled.parquet"),
        "model": run_file(w.experiment, w.method, w.seed, stage, "model.pt"),
        "dataset": dataset_dir(w.experiment),
    }


def selection_stage(experiment):
    """Query stage shown in the two-moons figure: report.selection_stage, clamped."""
    last = last_query_stage(experiment)
    wanted = REPORT["selection_stage"]
    return last if wanted < 0 else min(wanted, last)


def experiment_figures(experiment):
    """Figure and table files that make sense for this experiment's methods and dataset."""
    names = ["accuracy", "class_entropy"]
    if has_baseline(experiment):
        names.append("improvement")
    # The true loss needs the pool's labels, unknown in a practitioner's folder.
    if has_queries(experiment) and adversarial_methods(experiment) and pool_labels_known(experiment):
        names += ["discriminator_histogram", "loss_vs_likelihood"]
    if has_queries(experiment) and is_planar(experiment):
        names.append("selection")
    files = [figure(name) for name in names]
    tables = ["accuracy", "aulc", "labels_to_reach"]
    if has_queries(experiment):
        tables.append("sampling_time")
        if adversarial_methods(experiment) and pool_labels_known(experiment):
            tables += ["adversarial_health", "loss_vs_likelihood"]
    if has_noisy_oracle(experiment):
        tables.append("oracle_errors")
    files += [table(name, ext) for name in tables for ext in ("csv", "md", "html")]
    return [path.format(experiment=experiment) for path in files]


# ------------------------------------------------------------------------------- targets


def all_metrics():
    files = [
        run_file(name, method, seed, stage, "metrics.json")
        for name, exp in EXPERIMENTS.items()
        if name not in HUMAN
        for method in exp.methods
        for seed in exp.seeds
        for stage in range(exp.stages)
    ]
    return files + human_targets()


def study_file(name):
    return f"{RESULTS}/studies/{{study}}/{name}"


def all_figures():
    files = human_targets()
    for name in EXPERIMENTS:
        if name in HUMAN and not human_complete(name):
            continue
        files.append(f"{EXP_DIR}/summary.parquet".format(experiment=name))
        files += experiment_figures(name)
    for name in STUDIES:
        files += [
            study_file(f).format(study=name)
            for f in ("aulc.png", "curves.png", "table.csv", "table.md", "table.html")
        ]
    return files


def study_input(wildcards):
    return [
        f"{EXP_DIR}/summary.parquet".format(experiment=name) for name in STUDIES[wildcards.study]
    ]


def study_experiments(wildcards):
    """The study's experiments, each as {name, settings}: the script rebuilds them to diff."""
    return [
        {"name": name, **EXPERIMENTS[name].to_dict()} for name in STUDIES[wildcards.study]
    ]


# ----------------------------------------------------------------------- input functions


def pool_settings(wildcards):
    """What the initial pool depends on: a param of init_pool (rerun trigger)."""
    return EXPERIMENTS[wildcards.experiment].pool_settings()


def recipe_training_settings(wildcards):
    """What a recipe's trained model depends on besides its labeled set (tavaal.training): a
    param of the training jobs, so that e.g. a VAE setting retrains nothing."""
    return training_settings(EXPERIMENTS[wildcards.experiment], _training_recipe(wildcards))


def query_settings(wildcards):
    """What one method's queries depend on besides their input files (the settings its
    strategy reads): a vae change reruns VAAL's queries, not entropy's; adding a seed, method
    or stage leaves the params of existing jobs unchanged."""
    return method_settings(EXPERIMENTS[wildcards.experiment], wildcards.method)


def dataset_input(wildcards):
    return dataset_dir(wildcards.experiment)


def train_input(wildcards):
    return {
        "labeled": stage_file("{stage}", "labeled.parquet").format(**wildcards),
        "dataset": dataset_dir(wildcards.experiment),
    }


def train_initial_input(wildcards):
    return {
        "labeled": stage0_file("labeled.parquet").format(**wildcards),
        "dataset": dataset_dir(wildcards.experiment),
    }


def query_input(stage):
    """Input function of the query of `stage`: its labeled set, the dataset, the stage's task
    checkpoint only for methods that read the task model (random and VAAL do not), and the
    user's embedding file for methods that read it (`embedding.source: file`)."""

    def inputs(wildcards):
        w = wildcards
        files = {
            "labeled": run_file(w.experiment, w.method, w.seed, stage, "labeled.parquet"),
            "dataset": dataset_dir(w.experiment),
        }
        if uses_task_model(w.method):
            files["model"] = run_file(w.experiment, w.method, w.seed, stage, "model.pt")
        embedding = EXPERIMENTS[w.experiment].embedding
        if strategy_class(w.method).reads_embedding and embedding.source == "file":
            # The user's embedding file: a new one reruns the queries that read it.
            files["embedding"] = embedding.path
        return files

    return inputs


def _metric_runs(exp):
    return [(m, s, k) for m in exp.methods for s in exp.seeds for k in range(exp.stages)]


def aggregate_metric_methods(wildcards):
    """The method of each of aggregate_input's metrics files, in the same order."""
    return [m for m, _, _ in _metric_runs(EXPERIMENTS[wildcards.experiment])]


def aggregate_input(wildcards):
    exp = EXPERIMENTS[wildcards.experiment]
    runs = [(method, seed) for method in exp.methods for seed in exp.seeds]
    return {
        "metrics": [
            run_file(exp.name, m, s, k, "metrics.json") for m, s, k in _metric_runs(exp)
        ],
        # The last index file holds every sample with the stage that added it.
        "labeled": [run_file(exp.name, m, s, exp.stages - 1, "labeled.parquet") for m, s in runs],
        "scores": [
            run_file(exp.name, m, s, k, "scores.parquet")
            for m, s in runs
            for k in range(exp.stages - 1)
        ],
        "dataset": dataset_dir(exp.name),
    }


def summary_input(wildcards):
    return f"{EXP_DIR}/summary.parquet".format(**wildcards)


def histogram_input(wildcards):
    """Scores of the last query of every seed of the adversarial methods (TA-VAAL Fig. 7b)."""
    exp = EXPERIMENTS[wildcards.experiment]
    return {
        "summary": summary_input(wildcards),
        "scores": [
            run_file(exp.name, m, s, last_query_stage(exp.name), "scores.parquet")
            for m in adversarial_methods(exp.name)
            for s in exp.seeds
        ],
    }


def loss_likelihood_input(wildcards):
    """Last query of the first seed: scores, and the model that gives the true loss (Fig. 8)."""
    exp = EXPERIMENTS[wildcards.experiment]
    seed, stage = exp.seeds[0], last_query_stage(exp.name)
    methods = adversarial_methods(exp.name)
    return {
        "summary": summary_input(wildcards),
        "scores": [run_file(exp.name, m, seed, stage, "scores.parquet") for m in methods],
        "models": [run_file(exp.name, m, seed, stage, "model.pt") for m in methods],
        "dataset": dataset_dir(exp.name),
    }


def selection_input(wildcards):
    """Fig. 1: per method, the labeled set after the shown query and the model it queried with."""
    exp = EXPERIMENTS[wildcards.experiment]
    seed, stage = exp.seeds[0], selection_stage(exp.name)
    return {
        "summary": summary_input(wildcards),
        "labeled": [run_file(exp.name, m, seed, stage + 1, "labeled.parquet") for m in exp.methods],
        "models": [run_file(exp.name, m, seed, stage, "model.pt") for m in exp.methods],
        "dataset": dataset_dir(exp.name),
    }


def adversary_map_input(wildcards):
    """Issue 9: per VAAL / TA-VAAL, the input and output files of the query shown in the
    selection figure (first seed), from which its VAE + D are retrained exactly. No summary:
    the diagnostics need no training after the queries they look at."""
    exp = EXPERIMENTS[wildcards.experiment]
    seed, stage = exp.seeds[0], selection_stage(exp.name)
    methods = replayable_adversaries(exp.name)
    return {
        "labeled": [run_file(exp.name, m, seed, stage, "labeled.parquet") for m in methods],
        "scores": [run_file(exp.name, m, seed, stage, "scores.parquet") for m in methods],
        "models": [run_file(exp.name, m, seed, stage, "model.pt") for m in methods],
        "dataset": dataset_dir(exp.name),
    }


def selection_geometry_input(wildcards):
    """Every query of every method and seed: its scores, the labeled set it started from and
    the model it queried with (no summary, as adversary_map_input)."""
    exp = EXPERIMENTS[wildcards.experiment]
    queries = [
        (m, s, k) for m in exp.methods for s in exp.seeds for k in range(exp.stages - 1)
    ]
    return {
        "scores": [run_file(exp.name, m, s, k, "scores.parquet") for m, s, k in queries],
        "labeled": [run_file(exp.name, m, s, k, "labeled.parquet") for m, s, k in queries],
        "models": [run_file(exp.name, m, s, k, "model.pt") for m, s, k in queries],
        "dataset": dataset_dir(exp.name),
    }


def diagnostic_files():
    """Opt-in target `diagnostics` (issue 9): for planar experiments with queries, the
    selection geometry table and, with VAAL or TA-VAAL, the adversary map. They need the
    queries' files only, not the trainings after the last query nor the summary, so
    `snakemake diagnostics` alone runs no more than that."""
    files = []
    for name in EXPERIMENTS:
        if not (has_queries(name) and is_planar(name)):
            continue
        patterns = [table("selection_geometry", ext) for ext in ("csv", "md")]
        if replayable_adversaries(name):
            patterns.append(figure("adversary_map"))
        files += [path.format(experiment=name) for path in patterns]
    return files


def experiment_params(wildcards):
    """Figure jobs rebuild the ExperimentConfig from these (name, methods, seeds included)."""
    exp = EXPERIMENTS[wildcards.experiment]
    return {"name": exp.name, **exp.to_dict()}


def first_seed(wildcards):
    return EXPERIMENTS[wildcards.experiment].seeds[0]


def last_query(wildcards):
    return last_query_stage(wildcards.experiment)


def shown_selection_stage(wildcards):
    return selection_stage(wildcards.experiment)


# ------------------------------------------------------------------------------ resources
# Portable resources; profiles map them (gpu -> --gpus on SLURM). Sized from the data and the
# model (tavaal.resources): for a GPU node unless `device: cpu`. Without a profile,
# `snakemake --cores N` leaves mem_mb, runtime and gpu unconstrained.


def _training_recipe(wildcards):
    # The recipe wildcard names the recipe: a shared stage-0 model, or retrain_plain's.
    if "recipe" in wildcards.keys():
        return get_recipe(wildcards.recipe)
    return recipe(wildcards.method)


def _train_estimate(wildcards):
    stage = int(wildcards.stage) if "stage" in wildcards.keys() else 0
    exp = EXPERIMENTS[wildcards.experiment]
    return train_estimate(exp, _training_recipe(wildcards), stage, config["device"])


def dataset_threads(wildcards):
    """CPUs of a job reading the experiment's dataset: more for images read from their files,
    which the job decodes on all of them (tavaal.resources.job_threads)."""
    return job_threads(EXPERIMENTS[wildcards.experiment])


def training_threads(wildcards):
    """CPUs of a training job: `dataset_threads` for each of its data-parallel processes."""
    return train_threads(EXPERIMENTS[wildcards.experiment])


def train_gpus(wildcards):
    """GPUs of a training job: one per data-parallel process (train.processes). On SLURM one
    task holds them all (`sbatch --gpus=N`, no `tasks`: the plugin would turn it into
    --ntasks-per-gpu) and forks the processes itself (tavaal.distributed)."""
    return EXPERIMENTS[wildcards.experiment].train.processes


def train_mem_mb(wildcards):
    return _train_estimate(wildcards).mem_mb


def train_runtime(wildcards):
    return _train_estimate(wildcards).runtime_minutes


def query_mem_mb(stage):
    def mem_mb(wildcards):
        exp = EXPERIMENTS[wildcards.experiment]
        return query_estimate(exp, wildcards.method, stage, config["device"]).mem_mb

    return mem_mb


def query_runtime(stage):
    def runtime(wildcards):
        exp = EXPERIMENTS[wildcards.experiment]
        return query_estimate(exp, wildcards.method, stage, config["device"]).runtime_minutes

    return runtime


# ------------------------------------------------ ablations and robustness (issue 10)
# Plain retraining (TA-VAAL §6.1): a plain classifier, no Ranker and one member, retrained on
# the labeled sets of every method that trains otherwise, so that the quality of the selected
# samples is measured apart from the effect of the loss prediction module on its own learner.


def retrained_methods(experiment):
    """The experiment's methods whose task learner is not plain (lloss, tavaal, ensemble_varr)."""
    return [m for m in EXPERIMENTS[experiment].methods if recipe(m).name != PLAIN.name]


def plain_metrics_file(experiment, method, seed, stage):
    """metrics.json of the plain classifier on `method`'s labeled set of `stage`: stage 0's
    pool is shared, so its plain model is the shared stage-0 one (rule train_initial)."""
    if stage == 0:
        return f"{STAGE0}/{PLAIN.name}/metrics.json".format(experiment=experiment, seed=seed)
    return stage_file(stage, f"{PLAIN.name}/metrics.json").format(
        experiment=experiment, method=method, seed=seed
    )


def plain_retraining_files():
    """Opt-in target `plain_retraining`: its table and figure for every experiment with a
    method to retrain."""
    names = [name for name in EXPERIMENTS if retrained_methods(name)]
    patterns = [table("plain_retraining", ext) for ext in ("csv", "md", "html")]
    patterns.append(figure("plain_retraining"))
    return [path.format(experiment=name) for name in names for path in patterns]


def _retraining_runs(experiment):
    exp = EXPERIMENTS[experiment]
    methods = retrained_methods(experiment)
    return [(m, s, k) for m in methods for s in exp.seeds for k in range(exp.stages)]


def plain_retraining_input(wildcards):
    """Per (retrained method, seed, stage): the method's own metrics and the plain classifier's
    on the same labeled set; the baseline's metrics (random) as reference when it runs."""
    name = wildcards.experiment
    exp = EXPERIMENTS[name]
    runs = _retraining_runs(name)
    files = {
        "own": [run_file(name, m, s, k, "metrics.json") for m, s, k in runs],
        "plain": [plain_metrics_file(name, m, s, k) for m, s, k in runs],
        "reference": [],
    }
    baseline = REPORT["baseline"]
    if baseline in exp.methods:
        files["reference"] = [
            run_file(name, baseline, s, k, "metrics.json")
            for s in exp.seeds
            for k in range(exp.stages)
        ]
    return files


def plain_retraining_methods(wildcards):
    """The method of each of plain_retraining_input's own and plain files, in the same order."""
    return [m for m, _, _ in _retraining_runs(wildcards.experiment)]


def plain_retraining_reference(wildcards):
    """The method of the reference files: the baseline when the experiment runs it, else None."""
    baseline = REPORT["baseline"]
    return baseline if baseline in EXPERIMENTS[wildcards.experiment].methods else None


# Noisy oracle (VAAL §5.2): the wrong labels it gave, for experiments with oracle.noise > 0.


def oracle_noise(wildcards):
    return EXPERIMENTS[wildcards.experiment].oracle.noise
