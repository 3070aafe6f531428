"""The statistics every table and figure uses.

Comparisons with the baseline (random sampling by default) are paired by seed: every method of
a seed starts from the same initial pool (tavaal.pool.initial_indices), so the difference of two
methods at a stage of one seed removes the luck of that pool (TA-VAAL Fig. 3-5).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from tavaal.report.score import score_of
from tavaal.report.style import in_method_order


def learning_curves(summary: pd.DataFrame, metric: str | None = None) -> pd.DataFrame:
    """Per (method, stage), over seeds: mean, standard deviation (ddof 1), lowest and highest
    value, and count of `metric` (default: the summary's score, `tavaal.report.score`)."""
    metric = metric or score_of(summary).column
    grouped = summary.groupby(["method", "stage"], sort=False)
    curves = grouped.agg(
        labels=("labels", "first"),
        mean=(metric, "mean"),
        std=(metric, "std"),
        min=(metric, "min"),
        max=(metric, "max"),
        n=(metric, "count"),
    ).reset_index()
    return in_method_order(curves)


def paired_differences(
    summary: pd.DataFrame, baseline: str = "random", metric: str | None = None
) -> pd.DataFrame:
    """metric(method) - metric(baseline) for every (method, seed, stage) the baseline also has
    (default metric: the summary's score)."""
    metric = metric or score_of(summary).column
    if baseline not in set(summary["method"]):
        raise ValueError(f"baseline method {baseline!r} is not in the summary")
    base = summary.loc[summary["method"] == baseline, ["seed", "stage", metric]]
    base = base.rename(columns={metric: "baseline"})
    pairs = summary[["method", "seed", "stage", "labels", metric]].merge(
        base, on=["seed", "stage"], how="inner"
    )
    pairs["difference"] = pairs[metric] - pairs["baseline"]
    return in_method_order(pairs[["method", "seed", "stage", "labels", "difference"]])


def improvement_curves(
    summary: pd.DataFrame, baseline: str = "random", metric: str | None = None
) -> pd.DataFrame:
    """Mean and std over seeds of the paired difference to the baseline, per (method, stage)."""
    pairs = paired_differences(summary, baseline, metric)
    curves = (
        pairs.groupby(["method", "stage"], sort=False)
        .agg(
            labels=("labels", "first"),
            mean=("difference", "mean"),
            std=("difference", "std"),
            n=("difference", "count"),
        )
        .reset_index()
    )
    return in_method_order(curves)


def area_under_curve(labels: Sequence[float], values: Sequence[float]) -> float:
    """Trapezoid area under the learning curve divided by the label range: the curve's mean
    score over the labels spent. One point: its value."""
    x = np.asarray(labels, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    if len(x) == 0:
        return math.nan
    if len(x) == 1 or x[-1] == x[0]:
        return float(y.mean())
    area = float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))
    return area / float(x[-1] - x[0])


def aulc_per_seed(summary: pd.DataFrame, metric: str | None = None) -> pd.DataFrame:
    """Area under each (method, seed)'s curve of `metric` (default: the summary's score)."""
    metric = metric or score_of(summary).column
    rows = [
        {"method": method, "seed": seed, "aulc": area_under_curve(g["labels"], g[metric])}
        for (method, seed), g in summary.groupby(["method", "seed"], sort=False)
    ]
    return in_method_order(pd.DataFrame(rows))


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Student-t confidence interval of the mean; NaNs when fewer than two values."""
    from scipy import stats

    x = np.asarray(values, dtype=np.float64)
    if len(x) < 2:
        return math.nan, math.nan
    mean = float(x.mean())
    half = float(stats.t.ppf((1 + confidence) / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean - half, mean + half


def unlabeled_likelihood(scores: pd.DataFrame) -> np.ndarray:
    """The order of being unlabeled of a query's candidates: -D's logit where the scores have
    it (1 - P(labeled) rounds to 1.0 for confident logits and would tie them), else
    1 - disc_output."""
    if "disc_logit" in scores:
        return -scores["disc_logit"].to_numpy(np.float64)
    return 1.0 - scores["disc_output"].to_numpy(np.float64)


def loss_likelihood_correlation(
    likelihood: Sequence[float], true_loss: Sequence[float]
) -> tuple[float, float]:
    """Spearman's ρ between the true task loss of the candidates of one query and their
    likelihood of being unlabeled (`unlabeled_likelihood`: only its order matters), with its
    two-sided p-value (TA-VAAL Fig. 8): ρ > 0 when the adversary ranks high-loss samples
    first, as task awareness should. NaNs with fewer than three candidates or when either is
    constant (no ranking to compare)."""
    from scipy import stats

    likelihood = np.asarray(likelihood, dtype=np.float64)
    loss = np.asarray(true_loss, dtype=np.float64)
    if len(loss) < 3 or np.ptp(likelihood) == 0 or np.ptp(loss) == 0:
        return math.nan, math.nan
    result = stats.spearmanr(likelihood, loss)
    return float(result.statistic), float(result.pvalue)
