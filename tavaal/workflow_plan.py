"""What the Snakemake workflow builds, decided in plain Python; rules/common.smk only forwards.

From the validated config (the Snakefile's `config`, its defaults filled by the schema): which
experiments and studies run, the path pattern of every file, the targets (`all`, `all_figures`,
`diagnostics`, `plain_retraining`) and, from a job's wildcard values, the files, params, threads
and resources it gets. Snakemake's own objects (wildcards, `ancient`, WorkflowError, the hooks)
stay in the .smk files, so every decision here is testable without Snakemake.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from tavaal import layout
from tavaal.config import ExperimentConfig
from tavaal.data import (
    check_raw_sources,
    declare_image_folders,
    known_input_shape,
    known_split_sizes,
)
from tavaal.data.image_folder import FolderState, check_unread_images, folder_state
from tavaal.errors import ConfigError, TavaalError
from tavaal.practitioner import Progress, label_progress
from tavaal.report.study import check_study
from tavaal.resources import JobEstimate, job_threads, query_estimate, train_estimate, train_threads
from tavaal.results_guard import check_image_folders, check_results_match
from tavaal.strategies import method_settings, strategy_class, trains_discriminator
from tavaal.training import PLAIN, TrainingRecipe, get_recipe, training_settings
from tavaal.validation import check_experiment

# Logs and Snakemake's per-job benchmark files of one (experiment, method, seed) run and of the
# shared stage 0. The benchmark files have their own top-level folder, apart from the benchmark
# scripts' source in benchmarks/ (an experiment may be named like anything there).
RUN_LOGS = "logs/{experiment}/{method}/seed{seed}"
RUN_BENCH = "job_benchmarks/{experiment}/{method}/seed{seed}"
STAGE0_LOGS = "logs/{experiment}/stage0/seed{seed}"
STAGE0_BENCH = "job_benchmarks/{experiment}/stage0/seed{seed}"

# Queries the two-moons adversary map can replay (VAAL and TA-VAAL themselves).
REPLAYABLE_ADVERSARIES = ("vaal", "tavaal")
# Datasets whose samples are points in the plane (TA-VAAL Fig. 1 selection plot).
PLANAR_DATASETS = ("moons",)
# The files of the `study` rule, under results/studies/<study>/.
STUDY_FILES = ("aulc.png", "curves.png", "table.csv", "table.md", "table.html")
# Digits without leading zeros: the seed and stage wildcards.
NUMBER = r"0|[1-9]\d*"


class PlanError(TavaalError):
    """The workflow cannot be planned (a bad config, missing data, finished results of other
    settings, an invalid labels file); the message is the one line the workflow stops with."""


def alternation(names: Iterable[str]) -> str:
    """A regex matching exactly one of `names`."""
    # Longest first so that e.g. cifar10_imb10 is not cut at cifar10.
    return "|".join(re.escape(name) for name in sorted(set(names), key=lambda n: (-len(n), n)))


def only(names: Iterable[str]) -> str:
    """A wildcard constraint matching exactly `names` (nothing when there is none)."""
    names = list(names)
    return alternation(names) if names else r"(?!)"


def recipe(method: str) -> TrainingRecipe:
    return strategy_class(method).recipe


def uses_task_model(method: str) -> bool:
    return strategy_class(method).uses_task_model


def image_folder_mb(dataset: str) -> int:
    """Megabytes of a prepared image folder's arrays (pool and test, uint8 RGB)."""
    c, h, w = known_input_shape(dataset)
    n_train, n_test = known_split_sizes(dataset)
    return (n_train + n_test) * c * h * w // 2**20 + 1


class WorkflowPaths:
    """Path patterns of the workflow's files. `{experiment}`, `{method}`, `{seed}`, `{stage}`,
    `{recipe}` and `{study}` are left to Snakemake's wildcards; `.format` fills them."""

    def __init__(self, results_dir: str, data_dir: str):
        self.results = results_dir.rstrip("/")
        self.data = data_dir.rstrip("/")
        # Jobs of one (experiment, method, seed) run live under `run`, stage folders below it.
        # Stage 0 is shared (tavaal.layout): the initial pool per (experiment, seed), its model
        # per training recipe.
        self.run = f"{self.results}/{{experiment}}/{{method}}/seed{{seed}}"
        self.stage0 = f"{self.results}/{{experiment}}/stage0/seed{{seed}}"
        self.experiment_dir = f"{self.results}/{{experiment}}"
        self.summary = f"{self.experiment_dir}/summary.parquet"
        self.export = self.export_folder("{experiment}", "{method}", "{seed}", "{stage}")

    def stage_file(self, stage: int | str, name: str) -> str:
        """Pattern of a file of one stage; `stage` is an int or the "{stage}" wildcard."""
        return f"{self.run}/stage{stage}/{name}"

    def stage_log(self, stage: int | str, name: str) -> str:
        return f"{RUN_LOGS}/stage{stage}/{name}.log"

    def stage_benchmark(self, stage: int | str, name: str) -> str:
        return f"{RUN_BENCH}/stage{stage}/{name}.tsv"

    def run_stage_file(self, experiment: str, method: str, seed, stage: int, name: str) -> str:
        """A file in the run's own folder of `stage` (never the shared stage 0)."""
        return self.stage_file(stage, name).format(experiment=experiment, method=method, seed=seed)

    def run_file(self, experiment: str, method: str, seed, stage: int, name: str) -> str:
        """The file of (experiment, method, seed, stage), wherever it lives (stage 0 is shared)."""
        return str(layout.run_file(self.results, experiment, method, seed, stage, name))

    def stage0_file(self, name: str) -> str:
        """Pattern of a shared stage-0 file: the initial pool, or a recipe's model and metrics."""
        if name == "labeled.parquet":
            return f"{self.stage0}/{name}"
        return f"{self.stage0}/{{recipe}}/{name}"

    def summary_file(self, experiment: str) -> str:
        return self.summary.format(experiment=experiment)

    def figure(self, name: str) -> str:
        return f"{self.experiment_dir}/figures/{name}.png"

    def table(self, name: str, ext: str) -> str:
        return f"{self.experiment_dir}/tables/{name}.{ext}"

    def study_file(self, name: str) -> str:
        return f"{self.results}/studies/{{study}}/{name}"

    def export_folder(self, experiment: str, method: str, seed, stage) -> str:
        return layout.EXPORT_FOLDER.format(
            results=self.results, experiment=experiment, method=method, seed=seed, stage=stage
        )


def selected_experiment_names(config: Mapping[str, Any]) -> list[str]:
    """The experiments this run builds: `run_experiments`, or every defined one when null."""
    defined = list(config["experiments"])
    wanted = config.get("run_experiments")
    if wanted is None:
        return defined
    unknown = [name for name in wanted if name not in config["experiments"]]
    if unknown:
        raise PlanError(
            f"run_experiments: {unknown[0]!r} is not defined under experiments; "
            f"defined: {', '.join(defined)}"
        )
    if not wanted:
        raise PlanError("run_experiments: the list is empty, nothing to build")
    return list(wanted)


def load_experiments(config: Mapping[str, Any], data_dir: str) -> dict[str, ExperimentConfig]:
    """name -> ExperimentConfig of the selected experiments, each checked against the
    registries and its dataset (the image folders must be declared first)."""
    experiments = {}
    for name in selected_experiment_names(config):
        try:
            experiments[name] = ExperimentConfig.from_dict(name, config["experiments"][name])
            check_experiment(experiments[name], data_dir=data_dir)
        except ConfigError as exc:
            raise PlanError(f"invalid configuration: {exc}") from None
    return experiments


def load_studies(
    config: Mapping[str, Any], experiments: Mapping[str, ExperimentConfig], baseline: str
) -> dict[str, list[str]]:
    """name -> experiment names of each study (studies.<name>.experiments), checked."""
    studies = {}
    for name, study in (config.get("studies") or {}).items():
        try:
            check_study(name, study["experiments"], experiments, baseline)
        except ConfigError as exc:
            raise PlanError(f"invalid configuration: {exc}") from None
        studies[name] = list(study["experiments"])
    return studies


class WorkflowPlan:
    """Everything the workflow builds for one validated config.

    Construction checks the config (image folders, experiments, studies) and the labels files
    people gave; with `check_results` also the data and finished results already on disk
    (tavaal.results_guard), which only Snakemake's main process needs to do. Any refusal is a
    PlanError. Methods take the values of a job's wildcards; seeds and stages may be given as
    the wildcards' strings or as ints.
    """

    def __init__(self, config: Mapping[str, Any], check_results: bool = False):
        self.paths = WorkflowPaths(config["results_dir"], config["data_dir"])
        self.report = config["report"]
        self.device = config["device"]
        # A param of every compute job: bumping it reruns them all (docs/workflow.md).
        self.code_version = str(config["code_version"])
        # Practitioners' own image folders, checked and counted before any job: experiments
        # name them as datasets.
        try:
            self.image_folders = declare_image_folders(config["image_folders"])
        except TavaalError as exc:
            raise PlanError(f"invalid configuration: {exc}") from None
        self.experiments = load_experiments(config, self.paths.data)
        self._folder_states: dict[str, FolderState] = {}
        if check_results:
            self._check_before_jobs(config)
        self.studies = load_studies(config, self.experiments, self.report["baseline"])
        # Queries happen at stages 0 .. stages-2, one query_stage<k> rule per stage index k.
        self.query_stages = max(exp.stages for exp in self.experiments.values()) - 1
        # Who labels: a simulated oracle answers inside the query rules; a person (oracle kind
        # human, rules/practitioner.smk) answers requests the workflow stops at.
        self.human = [name for name, exp in self.experiments.items() if exp.oracle.human]
        self.simulated = [name for name in self.experiments if name not in self.human]
        self.human_asked_pool = [
            name for name in self.human if not self.experiments[name].oracle.initial_labels
        ]
        self.human_given_pool = [
            name for name in self.human if self.experiments[name].oracle.initial_labels
        ]
        self.label_progress = self._label_progress()

    # ------------------------------------------------------------------ checks before jobs

    def image_folder_state(self, name: str) -> FolderState:
        """The image folder `name` against its prepared copy (folder_state), listed once per
        plan: the check before jobs and the prepare job's params read it."""
        if name not in self._folder_states:
            self._folder_states[name] = folder_state(self.image_folders[name], self.paths.data)
        return self._folder_states[name]

    def _check_before_jobs(self, config: Mapping[str, Any]) -> None:
        """The raw folders still to read hold their files, the images no prepare has read yet
        decode, and finished results made with other settings or from another version of an
        image folder are never replaced silently (tavaal.results_guard)."""
        datasets = [exp.dataset for exp in self.experiments.values()]
        try:
            check_raw_sources(datasets, self.paths.data, config["raw_sources"])
            used_folders = sorted(set(datasets) & set(self.image_folders))
            for name in used_folders:
                check_unread_images(self.image_folder_state(name))
            replace = config.get("replace_results") or []
            check_results_match(self.paths.results, self.experiments, replace)
            check_image_folders(
                self.paths.results,
                {name: self.image_folder_state(name) for name in used_folders},
                {name: entry.get("dataset") for name, entry in config["experiments"].items()},
                replace,
            )
        except TavaalError as exc:
            raise PlanError(str(exc)) from None

    def _label_progress(self) -> dict[tuple[str, str, int], Progress]:
        """How far each human-labeled run can go with the labels people have given
        (tavaal.practitioner.label_progress); invalid labels files, or ones changed after a
        stage used them, stop here."""
        progress = {}
        for name in self.human:
            exp = self.experiments[name]
            for method in exp.methods:
                for seed in exp.seeds:
                    try:
                        progress[name, method, seed] = label_progress(
                            exp, self.paths.results, method, seed
                        )
                    except TavaalError as exc:
                        raise PlanError(f"labels: {exc}") from None
        return progress

    # ----------------------------------------------------------- what each experiment has

    def wildcard_constraints(self) -> dict[str, str]:
        """The workflow-wide wildcard constraints: only the names this run builds."""
        methods = (m for exp in self.experiments.values() for m in exp.methods)
        # plain also for the target plain_retraining: its stage-0 reference is the shared plain
        # model, wanted even where no method of the experiment trains plain.
        recipes = [r for name in self.experiments for r in self.experiment_recipes(name)]
        return {
            "experiment": alternation(self.experiments),
            "method": alternation(methods),
            "recipe": alternation([*recipes, PLAIN.name]),
            "dataset": alternation(exp.dataset for exp in self.experiments.values()),
            "seed": NUMBER,
            "stage": NUMBER,
            "study": only(self.studies),
        }

    def experiment_recipes(self, experiment: str) -> list[str]:
        """Training recipes of an experiment's methods, each once, in the order of the methods."""
        return list(dict.fromkeys(recipe(m).name for m in self.experiments[experiment].methods))

    def dataset_dir(self, experiment: str) -> str:
        return f"{self.paths.data}/{self.experiments[experiment].dataset}"

    def adversarial_methods(self, experiment: str) -> list[str]:
        """Methods whose queries train a discriminator (its figures and health table)."""
        return [
            m
            for m in self.experiments[experiment].methods
            if trains_discriminator(strategy_class(m))
        ]

    def replayable_adversaries(self, experiment: str) -> list[str]:
        return [m for m in self.experiments[experiment].methods if m in REPLAYABLE_ADVERSARIES]

    def last_query_stage(self, experiment: str) -> int:
        return self.experiments[experiment].stages - 2

    def has_queries(self, experiment: str) -> bool:
        return self.last_query_stage(experiment) >= 0

    def has_baseline(self, experiment: str) -> bool:
        methods = self.experiments[experiment].methods
        return self.report["baseline"] in methods and len(methods) > 1

    def has_noisy_oracle(self, experiment: str) -> bool:
        return self.experiments[experiment].oracle.noise > 0

    def is_planar(self, experiment: str) -> bool:
        return self.experiments[experiment].dataset in PLANAR_DATASETS

    def pool_labels_known(self, experiment: str) -> bool:
        folder = self.image_folders.get(self.experiments[experiment].dataset)
        return folder is None or folder.labels is not None

    def selection_stage(self, experiment: str) -> int:
        """Query stage shown in the two-moons figure: report.selection_stage, clamped."""
        last = self.last_query_stage(experiment)
        wanted = self.report["selection_stage"]
        return last if wanted < 0 else min(wanted, last)

    def first_seed(self, experiment: str) -> int:
        return self.experiments[experiment].seeds[0]

    def experiment_params(self, experiment: str) -> dict[str, Any]:
        """Figure jobs rebuild the ExperimentConfig from these (name, methods, seeds included)."""
        exp = self.experiments[experiment]
        return {"name": exp.name, **exp.to_dict()}

    def oracle_noise(self, experiment: str) -> float:
        return self.experiments[experiment].oracle.noise

    # ---------------------------------------------------- practitioner mode (human oracle)

    def human_targets(self) -> list[str]:
        """Per human-labeled run: the trainings its labels allow, the request it waits for
        (with its contact sheet) and the export of its last labeled stage."""
        files = []
        for (name, method, seed), progress in self.label_progress.items():
            files += [
                self.paths.run_file(name, method, seed, k, "metrics.json")
                for k in range(progress.ready)
            ]
            if progress.waiting_for is not None:
                folder = layout.request_folder(
                    self.paths.results, name, method, seed, progress.ready
                )
                files += [str(folder / "to_label.csv"), str(folder / "contact_sheet.png")]
            if progress.ready:
                export = self.paths.export_folder(name, method, seed, progress.ready - 1)
                files += [f"{export}/labeled.csv", f"{export}/model.pt"]
        return list(dict.fromkeys(files))

    def human_complete(self, experiment: str) -> bool:
        """Every run of the experiment has all its labels, and its folder has a test split: the
        summary, figures and tables can be made."""
        folder = self.image_folders[self.experiments[experiment].dataset]
        runs = [p for (name, _, _), p in self.label_progress.items() if name == experiment]
        return folder.test_labels is not None and all(p.waiting_for is None for p in runs)

    def waiting_for_labels(self) -> list[str]:
        """One line per labels file the runs wait for (the shared initial pool's once): which
        runs, what to label, where, and how."""
        waiting = {}
        for (name, method, seed), p in self.label_progress.items():
            if p.waiting_for is not None:
                runs = waiting.setdefault(p.waiting_for, (name, seed, p.ready, p.note, []))[4]
                runs.append(method)
        return [
            f"{name}, seed {seed}, stage {stage} ({', '.join(methods)}) waits for labels: {note}"
            for name, seed, stage, note, methods in waiting.values()
        ]

    def labels_file(self, experiment: str, method: str | None, seed, stage: int) -> str:
        """The person's labels file of a request; `method` None for the shared initial pool."""
        exp = self.experiments[experiment]
        owner = layout.ALL_METHODS if method is None else method
        return str(layout.labels_file(exp.oracle.labels_dir, exp.name, owner, seed, stage))

    def take_labels_input(self, experiment: str, method: str, seed, stage: int) -> dict:
        """A later stage's request and answers, the labeled set and scores of the query that
        asked."""
        run = (experiment, method, seed)
        return {
            "request": self.paths.run_stage_file(*run, stage, "label_request.json"),
            "to_label": self.paths.run_stage_file(*run, stage, "to_label.csv"),
            "labels": self.labels_file(*run, stage),
            "previous": self.paths.run_file(*run, stage - 1, "labeled.parquet"),
            "scores": self.paths.run_file(*run, stage - 1, "scores.parquet"),
        }

    def initial_labels_input(self, experiment: str) -> dict:
        return {
            "labels": self.experiments[experiment].oracle.initial_labels,
            "dataset": self.dataset_dir(experiment),
        }

    def export_input(self, experiment: str, method: str, seed, stage: int) -> dict:
        return {
            "labeled": self.paths.run_file(experiment, method, seed, stage, "labeled.parquet"),
            "model": self.paths.run_file(experiment, method, seed, stage, "model.pt"),
            "dataset": self.dataset_dir(experiment),
        }

    # ----------------------------------------------------------------------------- targets

    def experiment_figures(self, experiment: str) -> list[str]:
        """Figure and table files that make sense for this experiment's methods and dataset."""
        queries = self.has_queries(experiment)
        names = ["accuracy", "class_entropy"]
        if self.has_baseline(experiment):
            names.append("improvement")
        # The true loss needs the pool's labels, unknown in a practitioner's folder.
        adversarial = self.adversarial_methods(experiment) and self.pool_labels_known(experiment)
        if queries and adversarial:
            names += ["discriminator_histogram", "loss_vs_likelihood"]
        if queries and self.is_planar(experiment):
            names.append("selection")
        files = [self.paths.figure(name) for name in names]
        tables = ["accuracy", "aulc", "labels_to_reach"]
        if queries:
            tables.append("sampling_time")
            if adversarial:
                tables += ["adversarial_health", "loss_vs_likelihood"]
        if self.has_noisy_oracle(experiment):
            tables.append("oracle_errors")
        files += [self.paths.table(name, ext) for name in tables for ext in ("csv", "md", "html")]
        return [path.format(experiment=experiment) for path in files]

    def all_metrics(self) -> list[str]:
        """Target `all`: every metrics.json of every simulated-oracle run, and what the labels
        given so far allow of the human-labeled ones."""
        files = [
            self.paths.run_file(name, method, seed, stage, "metrics.json")
            for name, exp in self.experiments.items()
            if name not in self.human
            for method in exp.methods
            for seed in exp.seeds
            for stage in range(exp.stages)
        ]
        return files + self.human_targets()

    def all_figures(self) -> list[str]:
        """Target `all_figures`: every experiment's summary, figures and tables (a human-labeled
        one's once all its labels are given), and every study's files."""
        files = self.human_targets()
        for name in self.experiments:
            if name in self.human and not self.human_complete(name):
                continue
            files.append(self.paths.summary_file(name))
            files += self.experiment_figures(name)
        for name in self.studies:
            files += [self.paths.study_file(f).format(study=name) for f in STUDY_FILES]
        return files

    def diagnostic_files(self) -> list[str]:
        """Opt-in target `diagnostics` (issue 9): for planar experiments with queries, the
        selection geometry table and, with VAAL or TA-VAAL, the adversary map. They need the
        queries' files only, not the trainings after the last query nor the summary, so
        `snakemake diagnostics` alone runs no more than that."""
        files = []
        for name in self.experiments:
            if not (self.has_queries(name) and self.is_planar(name)):
                continue
            patterns = [self.paths.table("selection_geometry", ext) for ext in ("csv", "md")]
            if self.replayable_adversaries(name):
                patterns.append(self.paths.figure("adversary_map"))
            files += [path.format(experiment=name) for path in patterns]
        return files

    def study_input(self, study: str) -> list[str]:
        return [self.paths.summary_file(name) for name in self.studies[study]]

    def study_experiments(self, study: str) -> list[dict[str, Any]]:
        """The study's experiments, each as {name, settings}: the script rebuilds them to diff."""
        return [self.experiment_params(name) for name in self.studies[study]]

    # ---------------------------------------------------------- training and query jobs

    def pool_settings(self, experiment: str) -> dict:
        """What the initial pool depends on: a param of init_pool (rerun trigger)."""
        return self.experiments[experiment].pool_settings()

    def training_recipe(self, method: str | None, recipe_name: str | None) -> TrainingRecipe:
        """A training job's recipe: the one its recipe wildcard names (a shared stage-0 model,
        or retrain_plain's), else its method's."""
        return get_recipe(recipe_name) if recipe_name is not None else recipe(method)

    def training_settings(self, experiment: str, method: str | None, recipe_name: str | None):
        """What a recipe's trained model depends on besides its labeled set (tavaal.training):
        a param of the training jobs, so that e.g. a VAE setting retrains nothing."""
        exp = self.experiments[experiment]
        return training_settings(exp, self.training_recipe(method, recipe_name))

    def query_settings(self, experiment: str, method: str) -> dict:
        """What one method's queries depend on besides their input files (the settings its
        strategy reads): a vae change reruns VAAL's queries, not entropy's; adding a seed,
        method or stage leaves the params of existing jobs unchanged."""
        return method_settings(self.experiments[experiment], method)

    def train_input(self, experiment: str, method: str, seed, stage: int) -> dict:
        return {
            "labeled": self.paths.run_stage_file(
                experiment, method, seed, stage, "labeled.parquet"
            ),
            "dataset": self.dataset_dir(experiment),
        }

    def train_initial_input(self, experiment: str, seed) -> dict:
        return {
            "labeled": self.paths.stage0_file("labeled.parquet").format(
                experiment=experiment, seed=seed
            ),
            "dataset": self.dataset_dir(experiment),
        }

    def query_input(self, experiment: str, method: str, seed, stage: int) -> dict:
        """The query of `stage`: its labeled set, the dataset, the stage's task checkpoint only
        for methods that read the task model (random and VAAL do not), and the user's embedding
        file for methods that read it (`embedding.source: file`)."""
        files = {
            "labeled": self.paths.run_file(experiment, method, seed, stage, "labeled.parquet"),
            "dataset": self.dataset_dir(experiment),
        }
        if uses_task_model(method):
            files["model"] = self.paths.run_file(experiment, method, seed, stage, "model.pt")
        embedding = self.experiments[experiment].embedding
        if strategy_class(method).reads_embedding and embedding.source == "file":
            # The user's embedding file: a new one reruns the queries that read it.
            files["embedding"] = embedding.path
        return files

    # Portable resources; profiles map them (gpu -> --gpus on SLURM). Sized from the data and
    # the model (tavaal.resources): for a GPU node unless `device: cpu`.

    def train_estimate(
        self, experiment: str, method: str | None, recipe_name: str | None, stage: int
    ) -> JobEstimate:
        exp = self.experiments[experiment]
        return train_estimate(exp, self.training_recipe(method, recipe_name), stage, self.device)

    def query_estimate(self, experiment: str, method: str, stage: int) -> JobEstimate:
        return query_estimate(self.experiments[experiment], method, stage, self.device)

    def dataset_threads(self, experiment: str) -> int:
        """CPUs of a job reading the experiment's dataset: more for images read from their
        files, which the job decodes on all of them (tavaal.resources.job_threads)."""
        return job_threads(self.experiments[experiment])

    def training_threads(self, experiment: str) -> int:
        """CPUs of a training job: `dataset_threads` for each of its data-parallel processes."""
        return train_threads(self.experiments[experiment])

    def train_gpus(self, experiment: str) -> int:
        """GPUs of a training job: one per data-parallel process (train.processes). On SLURM
        one task holds them all (`sbatch --gpus=N`, no `tasks`: the plugin would turn it into
        --ntasks-per-gpu) and forks the processes itself (tavaal.distributed)."""
        return self.experiments[experiment].train.processes

    # ----------------------------------------------------------------- report jobs

    def _metric_runs(self, experiment: str) -> list[tuple[str, int, int]]:
        exp = self.experiments[experiment]
        return [(m, s, k) for m in exp.methods for s in exp.seeds for k in range(exp.stages)]

    def aggregate_metric_methods(self, experiment: str) -> list[str]:
        """The method of each of aggregate_input's metrics files, in the same order."""
        return [m for m, _, _ in self._metric_runs(experiment)]

    def aggregate_input(self, experiment: str) -> dict:
        exp = self.experiments[experiment]
        run_file = self.paths.run_file
        runs = [(method, seed) for method in exp.methods for seed in exp.seeds]
        return {
            "metrics": [
                run_file(exp.name, m, s, k, "metrics.json")
                for m, s, k in self._metric_runs(experiment)
            ],
            # The last index file holds every sample with the stage that added it.
            "labeled": [
                run_file(exp.name, m, s, exp.stages - 1, "labeled.parquet") for m, s in runs
            ],
            "scores": [
                run_file(exp.name, m, s, k, "scores.parquet")
                for m, s in runs
                for k in range(exp.stages - 1)
            ],
            "dataset": self.dataset_dir(exp.name),
        }

    def histogram_input(self, experiment: str) -> dict:
        """Scores of the last query of every seed of the adversarial methods (TA-VAAL Fig. 7b)."""
        exp = self.experiments[experiment]
        stage = self.last_query_stage(experiment)
        return {
            "summary": self.paths.summary_file(experiment),
            "scores": [
                self.paths.run_file(experiment, m, s, stage, "scores.parquet")
                for m in self.adversarial_methods(experiment)
                for s in exp.seeds
            ],
        }

    def loss_likelihood_input(self, experiment: str) -> dict:
        """Last query of the first seed: scores, and the model that gives the true loss
        (Fig. 8)."""
        seed, stage = self.first_seed(experiment), self.last_query_stage(experiment)
        methods = self.adversarial_methods(experiment)
        run_file = self.paths.run_file
        return {
            "summary": self.paths.summary_file(experiment),
            "scores": [run_file(experiment, m, seed, stage, "scores.parquet") for m in methods],
            "models": [run_file(experiment, m, seed, stage, "model.pt") for m in methods],
            "dataset": self.dataset_dir(experiment),
        }

    def selection_input(self, experiment: str) -> dict:
        """Fig. 1: per method, the labeled set after the shown query and the model it queried
        with."""
        methods = self.experiments[experiment].methods
        seed, stage = self.first_seed(experiment), self.selection_stage(experiment)
        run_file = self.paths.run_file
        return {
            "summary": self.paths.summary_file(experiment),
            "labeled": [
                run_file(experiment, m, seed, stage + 1, "labeled.parquet") for m in methods
            ],
            "models": [run_file(experiment, m, seed, stage, "model.pt") for m in methods],
            "dataset": self.dataset_dir(experiment),
        }

    def adversary_map_input(self, experiment: str) -> dict:
        """Issue 9: per VAAL / TA-VAAL, the input and output files of the query shown in the
        selection figure (first seed), from which its VAE + D are retrained exactly. No summary:
        the diagnostics need no training after the queries they look at."""
        seed, stage = self.first_seed(experiment), self.selection_stage(experiment)
        methods = self.replayable_adversaries(experiment)
        run_file = self.paths.run_file
        return {
            "labeled": [run_file(experiment, m, seed, stage, "labeled.parquet") for m in methods],
            "scores": [run_file(experiment, m, seed, stage, "scores.parquet") for m in methods],
            "models": [run_file(experiment, m, seed, stage, "model.pt") for m in methods],
            "dataset": self.dataset_dir(experiment),
        }

    def selection_geometry_input(self, experiment: str) -> dict:
        """Every query of every method and seed: its scores, the labeled set it started from
        and the model it queried with (no summary, as adversary_map_input)."""
        exp = self.experiments[experiment]
        queries = [(m, s, k) for m in exp.methods for s in exp.seeds for k in range(exp.stages - 1)]
        run_file = self.paths.run_file
        return {
            "scores": [run_file(experiment, m, s, k, "scores.parquet") for m, s, k in queries],
            "labeled": [run_file(experiment, m, s, k, "labeled.parquet") for m, s, k in queries],
            "models": [run_file(experiment, m, s, k, "model.pt") for m, s, k in queries],
            "dataset": self.dataset_dir(experiment),
        }

    # ------------------------------------------------ ablations and robustness (issue 10)
    # Plain retraining (TA-VAAL §6.1): a plain classifier, no Ranker and one member, retrained
    # on the labeled sets of every method that trains otherwise, so that the quality of the
    # selected samples is measured apart from the effect of the loss prediction module on its
    # own learner.

    def retrained_methods(self, experiment: str) -> list[str]:
        """The experiment's methods whose task learner is not plain (lloss, tavaal,
        ensemble_varr)."""
        return [m for m in self.experiments[experiment].methods if recipe(m).name != PLAIN.name]

    def plain_metrics_file(self, experiment: str, method: str, seed, stage: int) -> str:
        """metrics.json of the plain classifier on `method`'s labeled set of `stage`: stage 0's
        pool is shared, so its plain model is the shared stage-0 one (rule train_initial)."""
        if stage == 0:
            pattern = f"{self.paths.stage0}/{PLAIN.name}/metrics.json"
            return pattern.format(experiment=experiment, seed=seed)
        return self.paths.run_stage_file(
            experiment, method, seed, stage, f"{PLAIN.name}/metrics.json"
        )

    def plain_retraining_files(self) -> list[str]:
        """Opt-in target `plain_retraining`: its table and figure for every experiment with a
        method to retrain."""
        names = [name for name in self.experiments if self.retrained_methods(name)]
        patterns = [self.paths.table("plain_retraining", ext) for ext in ("csv", "md", "html")]
        patterns.append(self.paths.figure("plain_retraining"))
        return [path.format(experiment=name) for name in names for path in patterns]

    def _retraining_runs(self, experiment: str) -> list[tuple[str, int, int]]:
        exp = self.experiments[experiment]
        methods = self.retrained_methods(experiment)
        return [(m, s, k) for m in methods for s in exp.seeds for k in range(exp.stages)]

    def plain_retraining_input(self, experiment: str) -> dict:
        """Per (retrained method, seed, stage): the method's own metrics and the plain
        classifier's on the same labeled set; the baseline's metrics (random) as reference when
        it runs."""
        exp = self.experiments[experiment]
        runs = self._retraining_runs(experiment)
        run_file = self.paths.run_file
        files = {
            "own": [run_file(experiment, m, s, k, "metrics.json") for m, s, k in runs],
            "plain": [self.plain_metrics_file(experiment, m, s, k) for m, s, k in runs],
            "reference": [],
        }
        baseline = self.plain_retraining_reference(experiment)
        if baseline is not None:
            files["reference"] = [
                run_file(experiment, baseline, s, k, "metrics.json")
                for s in exp.seeds
                for k in range(exp.stages)
            ]
        return files

    def plain_retraining_methods(self, experiment: str) -> list[str]:
        """The method of each of plain_retraining_input's own and plain files, in the same
        order."""
        return [m for m, _, _ in self._retraining_runs(experiment)]

    def plain_retraining_reference(self, experiment: str) -> str | None:
        """The method of the reference files: the baseline when the experiment runs it, else
        None."""
        baseline = self.report["baseline"]
        return baseline if baseline in self.experiments[experiment].methods else None
