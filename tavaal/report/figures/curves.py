"""Learning curves: the absolute score (test accuracy, or mIoU for segmentation) and the paired
improvement over the baseline."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from tavaal.report.figures.common import draw_curve, experiment_name, label_count_axis
from tavaal.report.score import score_of
from tavaal.report.statistics import improvement_curves, learning_curves
from tavaal.report.style import method_label, method_order


def plot_accuracy(summary: pd.DataFrame, title: str | None = None) -> Figure:
    """Absolute score against labels, mean ± std over seeds (TA-VAAL Fig. 11-12; mIoU for
    segmentation, VAAL Fig. 3)."""
    score = score_of(summary)
    curves = learning_curves(summary)
    fig, ax = plt.subplots(figsize=(6, 4))
    for method in method_order(curves["method"]):
        draw_curve(ax, curves.assign(mean=100 * curves["mean"], std=100 * curves["std"]), method)
    label_count_axis(ax, curves["labels"])
    ax.set_ylabel(score.axis_label)
    ax.set_title(title or f"{experiment_name(summary)}: {score.name} (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def plot_improvement(summary: pd.DataFrame, baseline: str = "random") -> Figure:
    """Score minus the baseline's, paired by seed, mean ± std (TA-VAAL Fig. 3-5)."""
    score = score_of(summary)
    curves = improvement_curves(summary, baseline)
    curves = curves.assign(mean=100 * curves["mean"], std=100 * curves["std"])
    fig, ax = plt.subplots(figsize=(6, 4))
    for method in method_order(curves["method"]):
        draw_curve(ax, curves, method)
    label_count_axis(ax, curves["labels"])
    ax.set_ylabel(f"{score.name} − {method_label(baseline)} (percentage points)")
    ax.set_title(f"{experiment_name(summary)}: improvement over {method_label(baseline)}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig
