"""One active-learning stage as functions of files: what the workflow rules and the CLI call.

Every output is written atomically (temporary file, then rename), so a job killed half-way
leaves no file that Snakemake or a later stage could mistake for a finished one.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tavaal.atomic import atomic_write, atomic_write_text
from tavaal.config import ExperimentConfig, settings_hash
from tavaal.data import PreparedDataset, load_dataset, with_normalization
from tavaal.data.image_files import WORKERS_ENV
from tavaal.errors import CheckpointError, ConfigError, IndexFileError
from tavaal.oracle import SimulatedOracle, simulated_oracle
from tavaal.oracle import describe as describe_oracle
from tavaal.pool import (
    ALL_METHODS,
    LabeledSet,
    candidate_subset,
    excluded_initial_classes,
    initial_indices,
    make_table,
    oracle_labels,
    read_labeled,
    validation_indices,
    write_labeled,
    write_scores,
)
from tavaal.tasks import task_of

if TYPE_CHECKING:
    from tavaal.training import TrainingRecipe

Log = Callable[[str], None]


@contextlib.contextmanager
def job_logger(path: Path | str | None) -> Iterator[Log]:
    """Yield a `log(line)` writing timestamped, flushed lines to the job's log file (or stderr).

    An exception is written to the log with its traceback before it propagates, so a failed
    cluster job explains itself in `logs/`.
    """
    handle = open(path, "w") if path else sys.stderr  # noqa: SIM115 - closed below
    started = time.perf_counter()

    def log(line: str) -> None:
        handle.write(f"[{time.perf_counter() - started:8.1f}s] {line}\n")
        handle.flush()

    try:
        yield log
    except BaseException:
        handle.write(traceback.format_exc())
        handle.flush()
        raise
    finally:
        if handle is not sys.stderr:
            handle.close()


# Set to 0 to let workflow jobs end through the normal interpreter shutdown (e.g. for tools that
# report at exit, such as coverage or a profiler).
FAST_EXIT_ENV = "TAVAAL_FAST_EXIT"


@contextlib.contextmanager
def workflow_job(log_path: Path | str | None, threads: int | None = None) -> Iterator[Log]:
    """`job_logger` for the body of a workflow script; once the body has succeeded, the process
    ends at once with status 0 (`end_process`).

    `threads`: the job's CPUs (the rule's ``threads``), which decode the images of a dataset
    read from its files (``TAVAAL_DECODE_WORKERS``, `tavaal.data.image_files`); torch keeps one
    intra-op thread whatever they are (Snakemake sets ``OMP_NUM_THREADS`` to them), the setting
    the determinism promise is made for (docs/determinism.md). An exception propagates as
    usual (traceback in the log, non-zero exit status).
    """
    if threads is not None:
        os.environ[WORKERS_ENV] = str(max(1, int(threads)))
        if threads > 1:
            import torch

            torch.set_num_threads(1)
    with job_logger(log_path) as log:
        yield log
    end_process()


def end_process() -> None:
    """End a finished workflow job's process now (`os._exit(0)`) after flushing what it wrote.

    The interpreter's shutdown (clearing every module, a final garbage collection over torch's
    object graph) costs a torch job about 1 CPU-second and computes nothing: every output is
    already written and closed. Skipped with it are the atexit handlers, of which a job has
    `logging.shutdown` and the decoding pool's (both called here: forked decoding workers would
    otherwise outlive the job, holding its log open) and pyarrow's S3 finaliser (S3 is never
    used). Does nothing when TAVAAL_FAST_EXIT=0.
    """
    if os.environ.get(FAST_EXIT_ENV, "1") == "0":
        return
    import logging

    from tavaal.data.image_files import close_decoding_pool

    close_decoding_pool()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)


def query_metadata(exp: ExperimentConfig, method: str, seed: int, stage: int) -> dict:
    """Metadata of a method's query outputs (stage >= 1 labeled sets and scores)."""
    from tavaal.strategies import method_hash

    return {
        "experiment": exp.name,
        "method": method,
        "seed": seed,
        "stage": stage,
        "settings_hash": method_hash(exp, method),
        "oracle": describe_oracle(exp.oracle),
    }


def expected_metadata(exp: ExperimentConfig, method: str, seed: int, stage: int) -> dict:
    """Metadata the labeled set of `stage` must carry: stage 0 is the shared initial pool."""
    return {"experiment": exp.name, "method": ALL_METHODS if stage == 0 else method, "seed": seed}


def pool_metadata(exp: ExperimentConfig, seed: int, oracle: str) -> dict:
    """Metadata of the initial pool (stage 0, shared by every method) that `oracle` labeled."""
    return {
        "experiment": exp.name,
        "method": ALL_METHODS,
        "seed": seed,
        "stage": 0,
        "settings_hash": settings_hash(exp.pool_settings()),
        "oracle": oracle,
    }


def load_experiment_dataset(exp: ExperimentConfig, data_dir: Path) -> PreparedDataset:
    """The experiment's prepared dataset, with its input normalisation."""
    return with_normalization(load_dataset(exp.dataset, Path(data_dir)), exp.normalization)


def experiment_oracle(
    exp: ExperimentConfig, dataset: PreparedDataset, seed: int
) -> SimulatedOracle:
    """The simulated oracle of the experiment's queries for `seed` (`tavaal.oracle`); a human
    oracle's answers arrive as files instead (`tavaal.practitioner`).

    It answers from the dataset task's `label_table`: the classes, or for segmentation each
    image's labeled-pixel count (training reads the true masks from the dataset)."""
    info = dataset.info
    task = task_of(info)
    task.check_experiment(exp, f"experiments.{exp.name}")
    if exp.oracle.human:
        raise ConfigError(
            f"experiments.{exp.name}.oracle.kind: a person labels this experiment, through the "
            "workflow's requests (tavaal.practitioner), not inside this step"
        )
    if not info.train_labels_known:
        raise ConfigError(
            f"experiments.{exp.name}.oracle: a simulated oracle needs the labels of "
            f"{info.name}'s pool, which are unknown; use oracle kind: human"
        )
    return simulated_oracle(
        exp, task.label_table(dataset.y_train), info.num_classes, info.class_groups, seed
    )


def answer_table(exp: ExperimentConfig, dataset: PreparedDataset, seed: int) -> np.ndarray | None:
    """What the oracle says for every train sample, to check labeled sets against: the simulated
    oracle's table; None for the human oracle, whose answers were checked when its labels file
    was read (`tavaal.practitioner.run_take_labels`)."""
    if exp.oracle.human:
        return None
    return experiment_oracle(exp, dataset, seed).answers


def held_out(exp: ExperimentConfig, n_train: int, seed: int) -> np.ndarray:
    """Train-split indices of the validation split (never labeled or queried); may be empty."""
    return validation_indices(n_train, exp.train.validation_size, seed)


def unlabeled_pool(
    exp: ExperimentConfig, n_train: int, labeled: np.ndarray, seed: int
) -> np.ndarray:
    """Sorted train-split indices a query may pick from: neither labeled nor held out."""
    unavailable = np.union1d(labeled, held_out(exp, n_train, seed))
    return np.setdiff1d(np.arange(n_train, dtype=np.int64), unavailable)


def run_init_pool(
    exp: ExperimentConfig,
    seed: int,
    data_dir: Path,
    labeled_out: Path,
    log: Log = print,
) -> None:
    """Stage 0: the initial labeled pool, one per (experiment, seed), shared by every method.

    A biased pool (`initial_excluded_classes`, VAAL §5.2) draws only from samples whose true
    class is not among the excluded ones; the queries may pick any class.
    """
    dataset = load_dataset(exp.dataset, Path(data_dir))
    info = dataset.info
    task = task_of(info)
    # First: it refuses what the dataset's task cannot do (excluded classes of a segmentation
    # pool) before anything is drawn.
    oracle = experiment_oracle(exp, dataset, seed)
    validation = held_out(exp, info.n_train, seed)
    left_out = excluded_initial_classes(info.num_classes, exp.initial_excluded_classes, seed)
    excluded = validation
    if len(left_out):
        excluded = np.union1d(validation, np.flatnonzero(np.isin(dataset.y_train, left_out)))
    indices = initial_indices(info.n_train, exp.initial_size, seed, excluded)
    labels = oracle.answer(indices)
    metadata = {**pool_metadata(exp, seed, oracle.name), **task.index_metadata}
    if len(left_out):
        metadata["excluded_classes"] = ",".join(map(str, left_out.tolist()))
    write_labeled(labeled_out, make_table(indices, labels, 0), metadata)
    # An ideal oracle's answers are the label table itself (not read twice).
    wrong = (
        0 if exp.oracle.ideal else int((labels != task.label_table(dataset.y_train)[indices]).sum())
    )
    log(
        f"initial pool: {len(indices)} of {info.n_train} samples"
        + (f" ({len(validation)} held out for validation)" if len(validation) else "")
        + (f", classes {left_out.tolist()} left out" if len(left_out) else "")
        + f", class-count entropy {task.label_entropy(dataset, indices, labels):.3f}"
        + (f"; oracle: {oracle.name}, {wrong} wrong labels" if wrong else "")
    )


def run_train(
    exp: ExperimentConfig,
    recipe: TrainingRecipe,
    seed: int,
    stage: int,
    labeled: Path,
    data_dir: Path,
    model_out: Path,
    metrics_out: Path,
    method: str | None = None,
    device: str = "auto",
    log: Log = print,
    threads: int = 1,
) -> dict:
    """Train the stage's task learner from scratch; write model.pt and metrics.json.

    Stage 0 trains the recipe's shared model on the initial pool (`method` None); later stages
    train on `method`'s labeled set. With `train.processes` > 1 this process forks that many
    data-parallel workers (one per GPU; `tavaal.distributed`), shares its `threads` among them
    for decoding, and waits; rank 0 writes the outputs and the log lines.
    """
    import torch

    from tavaal.distributed import DataParallel, check_supported, run_processes
    from tavaal.training import train_task_learner

    if (stage == 0) != (method is None):
        raise ValueError("stage 0 is trained per recipe (method None), later stages per method")
    dataset = load_experiment_dataset(exp, data_dir)
    answers = answer_table(exp, dataset, seed)
    labeled_set = read_labeled(
        labeled, answers, stage, expected_metadata(exp, method or ALL_METHODS, seed, stage)
    )
    validation = held_out(exp, dataset.info.n_train, seed)
    model_out, metrics_out = Path(model_out), Path(metrics_out)
    resume_path = model_out.with_name(model_out.name + ".resume")

    def train_and_write(parallel: DataParallel | None = None) -> dict | None:
        trained = train_task_learner(
            exp,
            recipe,
            dataset,
            labeled_set.indices,
            labeled_set.labels,
            seed,
            stage,
            device=device,
            log=log if parallel is None or parallel.writes else _quiet,
            resume_path=resume_path,
            # The validation split is labeled by the same oracle as the training data (a
            # simulated one: the human oracle has no validation split, `OracleConfig`).
            validation=(validation, answers[validation]) if len(validation) else None,
            parallel=parallel,
        )
        if trained is None:  # a data-parallel rank other than 0
            return None
        return write_outputs(*trained)

    def write_outputs(checkpoint: dict, metrics: dict) -> dict:
        metrics = {
            "experiment": exp.name,
            "method": method or ALL_METHODS,
            "recipe": recipe.name,
            "seed": seed,
            "stage": stage,
            "settings_hash": checkpoint["settings_hash"],
            **metrics,
            "labeled_class_entropy": task_of(dataset.info).label_entropy(
                dataset, labeled_set.indices, labeled_set.labels
            ),
        }
        with atomic_write(model_out) as tmp:
            torch.save(checkpoint, tmp)
        _write_json_atomic(metrics_out, metrics)
        resume_path.unlink(missing_ok=True)
        return metrics

    processes = exp.train.processes
    if processes == 1:
        return train_and_write()
    # Before any worker starts: an unsupported task fails here, in the job's own process.
    check_supported(processes, f"experiments.{exp.name}", task_of(dataset.info).name)
    log(f"training on {processes} data-parallel processes")
    run_processes(processes, train_and_write, device, threads)
    return json.loads(metrics_out.read_text())


def _quiet(line: str) -> None:
    """The log of data-parallel ranks other than 0: rank 0 tells what they all do."""


def run_query(
    exp: ExperimentConfig,
    method: str,
    seed: int,
    stage: int,
    labeled: Path,
    model: Path | None,
    data_dir: Path,
    labeled_out: Path,
    scores_out: Path,
    device: str = "auto",
    log: Log = print,
) -> None:
    """Score a candidate subset, pick `budget` samples, ask the oracle, write stage k+1."""
    dataset = load_experiment_dataset(exp, data_dir)
    oracle = experiment_oracle(exp, dataset, seed)
    selection = select_samples(
        exp, method, seed, stage, labeled, model, dataset, scores_out, device, log
    )
    chosen = selection.chosen
    new_rows = make_table(chosen, oracle.answer(chosen), stage + 1, selection.chosen_scores)
    table = selection.labeled_set.table
    combined = new_rows if not len(table) else append_rows(table, new_rows)
    task = task_of(dataset.info)
    metadata = {**query_metadata(exp, method, seed, stage + 1), **task.index_metadata}
    write_labeled(labeled_out, combined, metadata)
    entropy = task.label_entropy(dataset, chosen, new_rows["label"].to_numpy())
    log(f"{method}: class entropy of the chosen {entropy:.3f}")


@dataclass
class Selection:
    """One query's picks, before anyone labels them."""

    labeled_set: LabeledSet  # the stage's labeled set the query started from
    chosen: np.ndarray  # int64, in pick order
    chosen_scores: np.ndarray  # their scores (higher = picked first)


def select_samples(
    exp: ExperimentConfig,
    method: str,
    seed: int,
    stage: int,
    labeled: Path,
    model: Path | None,
    dataset: PreparedDataset,
    scores_out: Path,
    device: str = "auto",
    log: Log = print,
) -> Selection:
    """Score a candidate subset and pick `budget` samples; write the query's scores.parquet.

    Whoever then labels the picks (`run_query`: the simulated oracle at once; the human oracle
    through a request, `tavaal.practitioner`), the picks and scores are the same.
    """
    from tavaal.training import resolve_device

    device = resolve_device(device)
    scores_out = Path(scores_out)
    ctx, strategy, labeled_set = _query_context(
        exp, method, seed, stage, labeled, model, dataset, scores_out, device, log
    )
    candidates = ctx.candidates
    log(f"{method}: scoring {len(candidates)} of {len(ctx.unlabeled)} unlabeled samples")
    # Sampling time (VAAL Table 1): the strategy's work, not library start-up or file I/O.
    started = time.perf_counter()
    result = strategy.query(ctx)
    query_seconds = time.perf_counter() - started
    chosen = np.asarray(result.chosen, dtype=np.int64)
    _check_selection(method, chosen, candidates, exp.budget)
    scores = _with_true_loss(result.scores.copy(), ctx)
    chosen_scores = scores.set_index("index").loc[chosen, "score"].to_numpy()
    write_scores(
        scores_out,
        scores,
        {
            **query_metadata(exp, method, seed, stage),
            "query_seconds": round(query_seconds, 4),
            "candidates": len(candidates),
            "diagnostics": {k: float(v) for k, v in result.diagnostics.items()},
        },
    )
    ctx.resume_path.unlink(missing_ok=True)
    log(f"{method}: chose {len(chosen)} samples in {query_seconds:.2f}s")
    return Selection(labeled_set=labeled_set, chosen=chosen, chosen_scores=chosen_scores)


def _query_context(exp, method, seed, stage, labeled, model, dataset, scores_out, device, log):
    """The checked labeled set, the pool and candidates, the stage's models: a query's
    context, its strategy and the labeled set it read."""
    from tavaal.seeding import seed_everything
    from tavaal.strategies import QueryContext, get_strategy
    from tavaal.training import load_task_models

    answers = answer_table(exp, dataset, seed)
    labeled_set = read_labeled(labeled, answers, stage, expected_metadata(exp, method, seed, stage))
    labeled_idx = labeled_set.indices
    unlabeled = unlabeled_pool(exp, dataset.info.n_train, labeled_idx, seed)
    if exp.budget > len(unlabeled):
        raise IndexFileError(
            f"{labeled}: only {len(unlabeled)} unlabeled samples left, budget is {exp.budget}"
        )
    candidates = candidate_subset(unlabeled, exp.subset_size, seed, stage)
    strategy = get_strategy(method)
    trained = None
    if strategy.uses_task_model:
        if model is None:
            raise CheckpointError(f"method {method!r} needs the stage's model.pt, none was given")
        trained = load_task_models(Path(model), exp, strategy.recipe, dataset.info, device)
    seed_everything(seed, stage, "query")
    ctx = QueryContext(
        experiment=exp,
        method=method,
        seed=seed,
        stage=stage,
        dataset=dataset,
        labeled=np.sort(labeled_idx),
        candidates=candidates,
        unlabeled=unlabeled,
        budget=exp.budget,
        device=device,
        models=trained,
        log=log,
        resume_path=scores_out.with_name(f"query{stage}.resume"),
        checkpoint_every=exp.vae.checkpoint_every,
    )
    return ctx, strategy, labeled_set


def _with_true_loss(scores, ctx):
    """`scores` with the true loss of every candidate (TA-VAAL Fig. 8; on the true labels,
    whatever the oracle says) where the strategy used the task model and the labels are known
    (a practitioner's pool has none): from the logits the strategy already computed when it
    did, else from a pass of the task (a segmentation image's mean pixel cross-entropy, batch
    by batch)."""
    from tavaal.inference import per_sample_loss

    dataset, trained = ctx.dataset, ctx.models
    if trained is None or "true_loss" in scores or not dataset.info.train_labels_known:
        return scores
    candidates, exp = ctx.candidates, ctx.experiment
    logits = ctx.candidate_logits
    if logits is None:
        loss = task_of(dataset.info).true_loss(
            trained.models[0], dataset, candidates, ctx.device, exp.query.inference_batch_size
        )
    else:
        loss = per_sample_loss(logits, oracle_labels(dataset.y_train, candidates))
    scores["true_loss"] = loss.astype(np.float64)
    return scores


def append_rows(old, new):
    import pandas as pd

    return pd.concat([old, new], ignore_index=True)


def _check_selection(method: str, chosen: np.ndarray, candidates: np.ndarray, budget: int) -> None:
    """A strategy bug must never reach an index file."""
    if len(chosen) != budget:
        raise RuntimeError(f"{method} chose {len(chosen)} samples, budget is {budget}")
    if len(np.unique(chosen)) != len(chosen):
        raise RuntimeError(f"{method} chose an index twice")
    outside = ~np.isin(chosen, candidates)
    if outside.any():
        raise RuntimeError(f"{method} chose index {chosen[outside][0]}, not a candidate")


def _write_json_atomic(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
