"""The headline test score of an experiment, and how tables and figures name it.

Classification experiments are scored by test accuracy, segmentation experiments by mean IoU
(issue 11: the learning curves, improvement figure and tables of a segmentation experiment use
mIoU, and their labels say so). A segmentation metrics.json names its score (`"metric":
"miou"`, `tavaal.tasks.segmentation`); classification files, older than that key, do not, and
mean accuracy. The summary keeps the key as its `metric` column.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Score:
    """One kind of headline score."""

    column: str  # its column in summary.parquet (the metrics.json key)
    name: str  # in prose: "accuracy", "mIoU"
    # What the class entropy of a labeled set counts: images per class, or labeled pixels.
    class_entropy: str

    @property
    def axis_label(self) -> str:
        return f"test {self.name} (%)"

    @property
    def points(self) -> str:
        """The unit of a difference of two scores in percent."""
        return f"{self.name} points"


ACCURACY = Score("accuracy", "accuracy", "class-count entropy")
MIOU = Score("miou", "mIoU", "class-pixel entropy")
SCORES = {score.column: score for score in (ACCURACY, MIOU)}


def score_named(metric: str | None) -> Score:
    """The score a metrics.json's `metric` key names (None or missing: accuracy)."""
    if metric is None or pd.isna(metric):  # a row of a file without the key
        return ACCURACY
    try:
        return SCORES[str(metric)]
    except KeyError:
        raise ValueError(f"unknown score {metric!r}; known: {', '.join(SCORES)}") from None


def score_of(summary: pd.DataFrame) -> Score:
    """The score of a summary (one experiment, or experiments compared with each other): one
    kind for all rows, else a ValueError, as accuracies and mIoUs do not share an axis."""
    if "metric" not in summary:
        return ACCURACY
    kinds = {score_named(value) for value in summary["metric"].tolist()}
    if not kinds:  # no rows: nothing to name
        return ACCURACY
    if len(kinds) != 1:
        names = ", ".join(sorted(kind.name for kind in kinds))
        raise ValueError(f"the summary mixes scores ({names}); one kind expected")
    return kinds.pop()
