"""Practitioner mode: the human oracle's steps of the active-learning loop, as functions of files.

A simulated oracle answers inside the query (`tavaal.stage.run_query`). A person answers later,
so with ``oracle.kind: human`` every labeling is a request, a file the person fills, and a job
that takes the answers (`tavaal.layout` says where each file lives):

- request: `run_initial_request` (the initial pool, drawn as the simulated oracle's is) or
  `run_query_request` (a method's query, exactly `tavaal.stage.select_samples`) writes the
  stage folder's to_label.csv, label_request.json and contact_sheet.png;
- answer: the person fills the labels file under ``oracle.labels_dir`` (`tavaal label` serves a
  page for it, `tavaal.labeling`);
- take: `run_take_labels` checks it and writes the stage's labeled.parquet, the same file a
  simulated oracle saying those labels writes, plus the labels file and its sha256.

With ``oracle.initial_labels`` the labels at hand are the initial pool (`run_initial_labels`).
`run_export` writes a stage's labeled set as CSV (path, label, stage, score) beside a copy of
its model. `label_progress` tells the workflow, before any job, how far each run can go and
refuses labels files that are invalid or changed after a stage used them.
"""

from __future__ import annotations

import csv
import io
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tavaal.atomic import atomic_write, atomic_write_text
from tavaal.config import ExperimentConfig
from tavaal.data import load_dataset, train_image_paths
from tavaal.errors import IndexFileError, LabelingError
from tavaal.labeling.request import (
    REQUEST_NAME,
    check_unchanged,
    digest,
    read_answers,
    read_request,
    require_complete,
    write_request,
)
from tavaal.layout import labels_file, request_folder, run_file
from tavaal.oracle import HUMAN, HumanOracle
from tavaal.pool import (
    ALL_METHODS,
    initial_indices,
    make_table,
    read_labeled,
    read_scores,
    write_labeled,
)
from tavaal.stage import (
    Log,
    append_rows,
    expected_metadata,
    held_out,
    load_experiment_dataset,
    pool_metadata,
    query_metadata,
    select_samples,
)

EXPORT_COLUMNS = ("sample_id", "path", "label", "stage", "score")


def _about(exp: ExperimentConfig, method: str, seed: int, stage: int) -> dict:
    return {"experiment": exp.name, "method": method, "seed": seed, "stage": stage}


def _labels_path(exp: ExperimentConfig, method: str, seed: int, stage: int) -> Path:
    return labels_file(exp.oracle.labels_dir, exp.name, method, seed, stage)


def run_initial_request(
    exp: ExperimentConfig, seed: int, data_dir: Path, folder: Path, log: Log = print
) -> None:
    """Ask the person for the initial pool: `initial_size` samples drawn at random (the same
    draw as the simulated oracle's initial pool)."""
    dataset = load_dataset(exp.dataset, Path(data_dir))
    info = dataset.info
    indices = initial_indices(
        info.n_train, exp.initial_size, seed, held_out(exp, info.n_train, seed)
    )
    paths = train_image_paths(Path(data_dir) / exp.dataset)
    target = _labels_path(exp, ALL_METHODS, seed, 0)
    write_request(
        folder,
        indices,
        [paths[i] for i in indices],
        info.classes,
        target,
        _about(exp, ALL_METHODS, seed, 0),
    )
    log(f"initial pool: asked for {len(indices)} labels in {folder}; answer in {target}")


def run_initial_labels(
    exp: ExperimentConfig,
    seed: int,
    data_dir: Path,
    initial_labels: Path,
    labeled_out: Path,
    log: Log = print,
) -> None:
    """The initial pool from labels already at hand (``oracle.initial_labels``: path,label)."""
    from tavaal.data.image_folder import read_files, read_path_labels

    dataset = load_dataset(exp.dataset, Path(data_dir))
    info = dataset.info
    files = read_files(Path(data_dir) / exp.dataset)
    sample_of = {path: i for i, path in enumerate(files["train"])}
    given = read_path_labels(initial_labels, info.classes, set(sample_of), files["root"])
    labels = {sample_of[path]: label for path, label in given.items()}
    if len(labels) != exp.initial_size:
        raise LabelingError(
            f"{initial_labels}: {len(labels)} labeled images, but experiments.{exp.name}."
            f"initial_size is {exp.initial_size}; make them equal"
        )
    indices = np.array(sorted(labels), dtype=np.int64)
    oracle = HumanOracle(labels, str(initial_labels))
    metadata = {**pool_metadata(exp, seed, HUMAN), "labels_file": str(initial_labels)}
    write_labeled(labeled_out, make_table(indices, oracle.answer(indices), 0), metadata)
    log(f"initial pool: {len(indices)} labels from {initial_labels}")


def run_query_request(
    exp: ExperimentConfig,
    method: str,
    seed: int,
    stage: int,
    labeled: Path,
    model: Path | None,
    data_dir: Path,
    scores_out: Path,
    folder: Path,
    device: str = "auto",
    log: Log = print,
) -> None:
    """Query stage `stage` and ask the person for the picks' labels (stage `stage` + 1)."""
    dataset = load_experiment_dataset(exp, data_dir)
    selection = select_samples(
        exp, method, seed, stage, labeled, model, dataset, scores_out, device, log
    )
    paths = train_image_paths(Path(data_dir) / exp.dataset)
    target = _labels_path(exp, method, seed, stage + 1)
    write_request(
        folder,
        selection.chosen,
        [paths[i] for i in selection.chosen],
        dataset.info.classes,
        target,
        _about(exp, method, seed, stage + 1),
    )
    log(f"{method}: asked for {len(selection.chosen)} labels in {folder}; answer in {target}")


def run_take_labels(
    exp: ExperimentConfig,
    seed: int,
    stage: int,
    method: str | None,
    request: Path,
    labeled_out: Path,
    previous: Path | None = None,
    scores: Path | None = None,
    log: Log = print,
) -> None:
    """The person's answers to the request of `stage` -> that stage's labeled.parquet.

    Stage 0 (`method` None) writes the initial pool; a later stage adds the answered picks to
    the previous stage's labeled set (`previous`), with the scores the query gave them
    (`scores`, the query's scores.parquet).
    """
    batch = read_request(request)
    answers = read_answers(batch)
    require_complete(answers, batch)
    ids = np.array([s.sample_id for s in batch.samples], dtype=np.int64)
    labels = HumanOracle(answers.labels, str(answers.path)).answer(ids)
    provenance = {"labels_file": str(answers.path), "labels_sha256": digest(answers.path)}
    if stage == 0:
        table = make_table(ids, labels, 0)
        metadata = {**pool_metadata(exp, seed, HUMAN), **provenance}
    else:
        if method is None or previous is None or scores is None:
            raise ValueError("a later stage needs its method, previous labeled set and scores")
        before = read_labeled(
            previous, None, stage - 1, expected_metadata(exp, method, seed, stage - 1)
        )
        score_table, _ = read_scores(scores)
        by_index = score_table.set_index("index")["score"]
        missing = [int(i) for i in ids if int(i) not in by_index.index]
        if missing:
            raise IndexFileError(f"{scores}: no score for requested sample {missing[0]}")
        new_rows = make_table(ids, labels, stage, by_index.loc[ids].to_numpy())
        table = append_rows(before.table, new_rows)
        metadata = {**query_metadata(exp, method, seed, stage), **provenance}
    write_labeled(labeled_out, table, metadata)
    log(f"stage {stage}: took {len(ids)} labels from {answers.path}")


def run_export(
    exp: ExperimentConfig,
    method: str,
    seed: int,
    stage: int,
    labeled: Path,
    model: Path,
    data_dir: Path,
    out_dir: Path,
    log: Log = print,
) -> None:
    """A stage's labeled set as ``labeled.csv`` (sample_id, path, label, stage, score; by stage,
    then sample id) and a copy of its trained model (``model.pt``, the standard checkpoint)."""
    dataset = load_dataset(exp.dataset, Path(data_dir))
    labeled_set = read_labeled(labeled, None, stage, expected_metadata(exp, method, seed, stage))
    paths = train_image_paths(Path(data_dir) / exp.dataset)
    table = labeled_set.table.sort_values(["stage_added", "index"], kind="stable")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    for row in table.itertuples(index=False):
        score = "" if np.isnan(row.score) else repr(float(row.score))
        label = dataset.info.classes[int(row.label)]
        writer.writerow([int(row.index), paths[int(row.index)], label, int(row.stage_added), score])
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / "labeled.csv", out.getvalue())
    with atomic_write(out_dir / "model.pt") as tmp:
        shutil.copyfile(model, tmp)
    log(f"exported {len(table)} labeled samples and the stage-{stage} model to {out_dir}")


@dataclass(frozen=True)
class Progress:
    """How far one (experiment, method, seed) run can go with the labels given so far."""

    ready: int  # stages 0 .. ready-1 have their labels
    waiting_for: Path | None  # the labels file stage `ready` waits for (None: all ready)
    note: str  # what the person should do next ("" when nothing waits)


def label_progress(exp: ExperimentConfig, results_dir: Path, method: str, seed: int) -> Progress:
    """The stages whose labels are given, checked before any job runs.

    A stage is ready when its labels file exists and labels every requested sample. Refused
    (LabelingError naming file and row): an invalid labels file, or one whose labels differ
    from those its stage's labeled.parquet was built from. A labels file whose request is not
    written yet (its results were removed) is checked by the job that takes it.
    """
    for stage in range(exp.stages):
        if stage == 0 and exp.oracle.initial_labels:
            continue
        owner = ALL_METHODS if stage == 0 else method
        target = _labels_path(exp, owner, seed, stage)
        folder = request_folder(results_dir, exp.name, method, seed, stage)
        if not target.exists():
            return Progress(stage, target, _ask(folder, target, None))
        if not (folder / REQUEST_NAME).exists():
            continue
        batch = read_request(folder)
        answers = read_answers(batch)
        if not answers.complete:
            return Progress(
                stage, target, _ask(folder, target, answers.missing, len(batch.samples))
            )
        labeled = run_file(results_dir, exp.name, method, seed, stage, "labeled.parquet")
        if labeled.exists():
            used = read_labeled(labeled)
            rows = used.table[used.table["stage_added"] == stage]
            said = dict(zip(rows["index"].tolist(), rows["label"].tolist(), strict=True))
            check_unchanged(answers, batch, said, labeled)
    return Progress(exp.stages, None, "")


def _ask(folder: Path, target: Path, missing, total: int = 0) -> str:
    how = f"`tavaal label {folder}` (a page on localhost) or fill a copy of {folder}/to_label.csv"
    if missing is None:
        return f"label the images of {folder}/contact_sheet.png into {target}: {how}"
    return (
        f"{target}: {len(missing)} of {total} samples still have no label (first: sample "
        f"{missing[0].sample_id}); finish it with {how}"
    )
