"""Plain retraining (TA-VAAL §6.1): the labeled sets of methods whose task learner carries a
loss prediction module (or is an ensemble), learned again by a plain classifier.

A method's accuracy (or mIoU) mixes two effects: which samples it selected, and how its own
learner trains (learning loss and TA-VAAL train the classifier jointly with a Ranker, which can
help or hurt it). A plain classifier (a plain DRN for segmentation) trained on the same labeled
sets, with the same training settings and seed, measures the selection alone, on the footing of
the plain methods such as random.
Stage 0's pool is shared by every method, so its plain classifier is the shared stage-0 model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from tavaal.report.figures.common import label_count_axis
from tavaal.report.score import score_named, score_of
from tavaal.report.style import in_method_order, method_color, method_label, method_order
from tavaal.report.summary import read_metrics
from tavaal.report.table_files import signed

KEYS = ["method", "seed", "stage"]
# tavaal.training.PLAIN.name, spelled out: importing tavaal.training would load torch into
# every report job.
PLAIN_RECIPE = "plain"


def read_retraining(
    own_paths: Sequence[str | Path],
    plain_paths: Sequence[str | Path],
    methods: Sequence[str],
    reference_paths: Sequence[str | Path] = (),
    reference: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    """The metrics files as frames (method, seed, stage, labels, score, metric): the methods'
    own learners, the plain learners on their labeled sets (`methods[i]` is the method of the
    i-th file of both lists), and the reference method's (None without one). `score` is the
    test accuracy, or a segmentation experiment's mIoU, which `metric` names."""
    own = read_metrics(list(own_paths), list(methods))
    plain = read_metrics(list(plain_paths), list(methods))
    not_plain = plain[plain["recipe"] != PLAIN_RECIPE]
    if len(not_plain):
        row = not_plain.iloc[0]
        raise ValueError(
            f"the plain classifier of {row['method']}, seed {row['seed']}, stage {row['stage']} "
            f"was trained with recipe {row['recipe']!r}"
        )
    ref = None
    if reference is not None and len(reference_paths):
        ref = _scored(read_metrics(list(reference_paths), [reference] * len(reference_paths)))
    return _scored(own), _scored(plain), ref


def _scored(metrics: pd.DataFrame) -> pd.DataFrame:
    score = score_of(metrics)
    scored = metrics.assign(score=metrics[score.column], metric=score.column)
    return scored[[*KEYS, "labels", "score", "metric"]]


def plain_retraining_table(
    own: pd.DataFrame, plain: pd.DataFrame, reference: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Per (method, stage): the test score (accuracy, or mIoU) of the method's own learner and of
    the plain learner on its labeled sets (mean, std over seeds), their difference plain − own
    paired by seed, and the reference method's score at that stage (NaN without one); `score`
    names it (accuracy, or miou)."""
    pairs = own.merge(plain, on=KEYS, suffixes=("_own", "_plain"), validate="one_to_one")
    if len(pairs) != len(own) or len(pairs) != len(plain):
        raise ValueError("own and plain metrics must cover the same (method, seed, stage) runs")
    mismatch = pairs[pairs["labels_own"] != pairs["labels_plain"]]
    if len(mismatch):
        row = mismatch.iloc[0]
        raise ValueError(
            f"{row['method']}, seed {row['seed']}, stage {row['stage']}: the plain classifier "
            f"learned {row['labels_plain']} labels, the method's own {row['labels_own']}"
        )
    pairs["difference"] = pairs["score_plain"] - pairs["score_own"]
    table = (
        pairs.groupby(["method", "stage"], sort=False)
        .agg(
            labels=("labels_own", "first"),
            seeds=("seed", "count"),
            own_mean=("score_own", "mean"),
            own_std=("score_own", "std"),
            plain_mean=("score_plain", "mean"),
            plain_std=("score_plain", "std"),
            plain_minus_own_mean=("difference", "mean"),
            plain_minus_own_std=("difference", "std"),
        )
        .reset_index()
    )
    if reference is None:
        table["reference"] = None
        table["reference_mean"] = math.nan
        table["reference_std"] = math.nan
    else:
        ref = reference.groupby("stage").agg(
            reference=("method", "first"),
            reference_mean=("score", "mean"),
            reference_std=("score", "std"),
        )
        table = table.merge(ref.reset_index(), on="stage", how="left")
    table["score"] = score_of(own).column
    return in_method_order(table)


def plain_retraining_display(table: pd.DataFrame) -> pd.DataFrame:
    """For reading: accuracies in percent "mean ± std", the paired difference in points."""
    shown = {
        "method": [method_label(m) for m in table["method"]],
        "labels": table["labels"].astype(int),
        "own learner (%)": _percent(table["own_mean"], table["own_std"]),
        "plain classifier (%)": _percent(table["plain_mean"], table["plain_std"]),
        "plain − own (points)": [
            f"{signed(100 * mean, 1)} ± {_points(std)}"
            for mean, std in zip(
                table["plain_minus_own_mean"], table["plain_minus_own_std"], strict=True
            )
        ],
    }
    references = table["reference"].dropna().unique()
    if len(references):
        shown[f"{method_label(references[0])} (%)"] = _percent(
            table["reference_mean"], table["reference_std"]
        )
    return pd.DataFrame(shown)


def plot_plain_retraining(table: pd.DataFrame, title: str) -> Figure:
    """One panel per method: its own learner, the plain classifier on its labeled sets and the
    reference method, test accuracy against labeled samples, mean ± std over seeds."""
    # Here, not at the top: tavaal.report.figures picks the backend before pyplot loads.
    import matplotlib.pyplot as plt

    methods = method_order(table["method"])
    fig, axes = plt.subplots(
        1, len(methods), figsize=(4.5 * len(methods), 4), sharey=True, squeeze=False
    )
    for ax, method in zip(axes[0], methods, strict=True):
        rows = table[table["method"] == method].sort_values("stage")
        color = method_color(method)
        _curve(ax, rows, "own", color, "-", f"{method_label(method)}, own task learner")
        _curve(ax, rows, "plain", color, "--", "plain classifier, same labeled sets")
        reference = rows["reference"].dropna()
        if len(reference):
            name = reference.iloc[0]
            _curve(ax, rows, "reference", method_color(name), ":", method_label(name))
        label_count_axis(ax, rows["labels"])
        ax.set_title(method_label(method))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    score = score_named(table["score"].iloc[0] if "score" in table and len(table) else None)
    axes[0][0].set_ylabel(f"{score.axis_label}, mean ± std over seeds")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _curve(ax, rows: pd.DataFrame, prefix: str, color, style: str, label: str) -> None:
    x = rows["labels"].to_numpy(np.float64)
    mean = 100 * rows[f"{prefix}_mean"].to_numpy(np.float64)
    std = 100 * np.nan_to_num(rows[f"{prefix}_std"].to_numpy(np.float64))
    ax.plot(x, mean, style, marker="o", markersize=3, color=color, label=label)
    ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.12, linewidth=0)


def _percent(means: pd.Series, stds: pd.Series) -> list[str]:
    return [
        "—" if math.isnan(mean) else f"{100 * mean:.1f} ± {_points(std)}"
        for mean, std in zip(means, stds, strict=True)
    ]


def _points(std: float) -> str:
    return "—" if math.isnan(std) else f"{100 * std:.1f}"
