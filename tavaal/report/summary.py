"""One experiment's per-stage files as one tidy frame: summary.parquet.

`build_summary` reads the metrics.json, labeled.parquet and scores.parquet of every (method,
seed, stage) into one row per (method, seed, stage). Every table and most figures are functions
of that frame alone, so they are unit-testable on hand-made frames.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from tavaal.atomic import atomic_write
from tavaal.data import class_count_entropy
from tavaal.pool import ALL_METHODS, read_labeled, read_scores
from tavaal.report.style import method_order

KEYS = ["experiment", "method", "seed", "stage"]


def read_metrics(paths: Sequence[str | Path], methods: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per metrics.json; the per-class accuracies become min_class_accuracy (a
    segmentation file's per-class IoUs: min_class_iou), and other lists are left out.

    Stage 0 is shared (`tavaal.layout`): its metrics say method "*", and `methods[i]` names the
    method whose row the i-th file gives (a file of another method is an error).
    """
    if methods is not None and len(methods) != len(paths):
        raise ValueError(f"{len(paths)} metrics files but {len(methods)} method names")
    rows = []
    for i, path in enumerate(paths):
        data = json.loads(Path(path).read_text())
        if methods is not None:
            if data.get("method") not in (ALL_METHODS, methods[i]):
                raise ValueError(
                    f"{path}: metrics of method {data.get('method')!r}, expected {methods[i]!r}"
                )
            data["method"] = methods[i]
        per_class_key = "per_class_iou" if "per_class_iou" in data else "per_class_accuracy"
        per_class = [v for v in data.get(per_class_key) or [] if v is not None]
        row = {key: value for key, value in data.items() if not isinstance(value, list | dict)}
        row[per_class_key.replace("per_class", "min_class")] = (
            min(per_class) if per_class else math.nan
        )
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        raise ValueError("no metrics files to aggregate")
    return frame


def selection_statistics(
    labeled_paths: Iterable[str | Path],
    true_labels: np.ndarray,
    label_histogram: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> pd.DataFrame:
    """Per (method, seed, stage), from the last index file of each run (it holds every stage).

    selected_class_entropy: class entropy of the samples added at that stage (stage 0: the
    initial pool); labeled_class_entropy: of the whole labeled set at that stage (TA-VAAL Fig.
    7a). The classes are counted by `label_histogram(indices, labels)` (`Task.label_histogram`:
    images per label, or labeled pixels of the masks), once per stage's batch: a stage's
    labeled set is the sum of the batches up to it.
    wrong_labels: samples of the labeled set at that stage whose label (what the oracle said)
    differs from `true_labels[index]`, what a true oracle says (`Task.label_table`);
    queried_wrong_labels: of those, the ones bought by queries (stage_added >= 1). Both 0 with
    the ideal oracle (VAAL §5.2).
    """
    rows = []
    for path in labeled_paths:
        labeled = read_labeled(path)
        meta = labeled.metadata
        added = labeled.table["stage_added"].to_numpy()
        labels = labeled.labels
        wrong = labels != np.asarray(true_labels[labeled.indices], dtype=np.int64)
        batches = np.stack(
            [
                label_histogram(labeled.indices[added == stage], labels[added == stage])
                for stage in range(labeled.stage + 1)
            ]
        )
        totals = np.cumsum(batches, axis=0)
        for stage in range(labeled.stage + 1):
            rows.append(
                {
                    "experiment": meta["experiment"],
                    "method": meta["method"],
                    "seed": int(meta["seed"]),
                    "stage": stage,
                    "selected": int(np.sum(added == stage)),
                    "selected_class_entropy": class_count_entropy(batches[stage]),
                    "labeled_class_entropy": class_count_entropy(totals[stage]),
                    "wrong_labels": int(np.sum(wrong & (added <= stage))),
                    "queried_wrong_labels": int(np.sum(wrong & (added >= 1) & (added <= stage))),
                }
            )
    return pd.DataFrame(rows)


def query_statistics(scores_paths: Iterable[str | Path]) -> pd.DataFrame:
    """Per query (method, seed, stage): time, candidates, diagnostics (diag_*), true losses."""
    rows = []
    for path in scores_paths:
        scores, meta = read_scores(path)
        row = {
            "experiment": meta["experiment"],
            "method": meta["method"],
            "seed": int(meta["seed"]),
            "stage": int(meta["stage"]),
            "query_seconds": float(meta["query_seconds"]),
            "candidates": len(scores),
        }
        for key, value in sorted((meta.get("diagnostics") or {}).items()):
            row[f"diag_{key}"] = float(value)
        if "true_loss" in scores:
            chosen = scores["chosen"].to_numpy(bool)
            loss = scores["true_loss"].to_numpy(np.float64)
            # Task awareness in one number: do the picks have a higher loss than the candidates?
            row["chosen_true_loss"] = float(loss[chosen].mean()) if chosen.any() else math.nan
            row["candidate_true_loss"] = float(loss.mean())
        rows.append(row)
    return pd.DataFrame(rows, columns=None if rows else KEYS)


def build_summary(
    metrics_paths: Iterable[str | Path],
    labeled_paths: Iterable[str | Path],
    scores_paths: Iterable[str | Path],
    num_classes: int,
    metric_methods: Sequence[str] | None = None,
    *,
    y_train: np.ndarray,
    label_histogram: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> pd.DataFrame:
    """Every metric row of one experiment: one row per (method, seed, stage).

    Query columns (query_seconds, diag_*, ...) belong to the query made at that stage and are
    empty at the last stage, which has no query. `metric_methods`: see `read_metrics`;
    `y_train`: what a true oracle's index file records for each train sample (the true class
    labels of a classification dataset), against which the oracle's answers are counted;
    `label_histogram`: the classes a labeled set holds (`selection_statistics`), by default
    one count per sample of its label.
    """
    if label_histogram is None:

        def label_histogram(indices: np.ndarray, labels: np.ndarray) -> np.ndarray:
            return np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)

    metrics = read_metrics(list(metrics_paths), metric_methods)
    metrics = metrics.drop(
        columns=["labeled_class_entropy", "recipe", "settings_hash"], errors="ignore"
    )
    selection = selection_statistics(labeled_paths, y_train, label_histogram)
    queries = query_statistics(scores_paths)
    summary = metrics.merge(selection, on=KEYS, how="left", validate="one_to_one")
    summary = summary.merge(queries, on=KEYS, how="left", validate="one_to_one")
    summary["num_classes"] = num_classes
    summary["seed"] = summary["seed"].astype(np.int64)
    summary["stage"] = summary["stage"].astype(np.int64)
    first = KEYS + ["labels", "accuracy", "miou", "test_loss", "train_seconds", "query_seconds"]
    columns = [c for c in first if c in summary] + [c for c in summary if c not in first]
    order = {m: i for i, m in enumerate(method_order(summary["method"]))}
    summary = summary.assign(_order=summary["method"].map(order))
    summary = summary.sort_values(["_order", "seed", "stage"]).drop(columns="_order")
    return summary[columns].reset_index(drop=True)


def aggregate_experiment(
    metrics_paths: Sequence[str | Path],
    labeled_paths: Sequence[str | Path],
    scores_paths: Sequence[str | Path],
    dataset_dir: str | Path,
    metric_methods: Sequence[str] | None = None,
) -> pd.DataFrame:
    """`build_summary` with the number of classes, the true labels and the class histograms
    of the prepared dataset's task (`tavaal.tasks`: the classes of a segmentation labeled set
    are its masks' pixels)."""
    from tavaal.data import load_dataset
    from tavaal.tasks import task_of

    dataset_dir = Path(dataset_dir)
    dataset = load_dataset(dataset_dir.name, dataset_dir.parent)
    task = task_of(dataset.info)
    return build_summary(
        metrics_paths,
        labeled_paths,
        scores_paths,
        dataset.info.num_classes,
        metric_methods,
        y_train=task.label_table(dataset.y_train),
        label_histogram=functools.partial(task.label_histogram, dataset),
    )


def write_summary(summary: pd.DataFrame, path: str | Path) -> None:
    """Parquet, written atomically (temporary file, then rename)."""
    with atomic_write(path) as tmp:
        summary.to_parquet(tmp, index=False)


def read_summary(path: str | Path) -> pd.DataFrame:
    return pd.read_parquet(path)
