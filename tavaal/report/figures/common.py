"""What every figure shares: saving, mean-and-band curves, the labeled-samples axis, the
experiment's name."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from tavaal.report.style import method_color, method_label

# With more stages than this, ticks at every stage's label count would overlap.
MAX_STAGE_TICKS = 12


def save_figure(fig: Figure, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def draw_curve(
    ax, curves: pd.DataFrame, method: str, band: str = "std", label: str | None = None
) -> None:
    """One method of `learning_curves`: the mean over seeds as a line and a shaded band, either
    ±1 standard deviation (band="std") or the lowest to the highest seed (band="range"). The
    range stays inside the values' own bounds (an entropy within [0, log K]); mean ± std need not.
    `label`: the legend's, the method's name by default.
    """
    group = curves[curves["method"] == method].sort_values("stage")
    x = group["labels"].to_numpy(np.float64)
    mean = group["mean"].to_numpy(np.float64)
    if band == "std":
        std = np.nan_to_num(group["std"].to_numpy(np.float64))
        low, high = mean - std, mean + std
    elif band == "range":
        low, high = group["min"].to_numpy(np.float64), group["max"].to_numpy(np.float64)
    else:
        raise ValueError(f"band must be 'std' or 'range', not {band!r}")
    color = method_color(method)
    ax.plot(x, mean, marker="o", markersize=3, color=color, label=label or method_label(method))
    ax.fill_between(x, low, high, color=color, alpha=0.15, linewidth=0)


def label_count_axis(ax, labels: Iterable[float]) -> None:
    """The x axis of labeled-sample counts: ticks at the stages' counts, or integer ticks
    when there are too many stages to label each."""
    counts = sorted({int(value) for value in labels})
    ax.set_xlabel("labeled samples")
    if len(counts) <= MAX_STAGE_TICKS:
        ax.set_xticks(counts)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def seeds_shown(seeds: Iterable[int]) -> str:
    """Which seeds a figure shows, for its title: "seed 0" or "seeds 0, 1, 2 pooled"."""
    distinct = sorted({int(seed) for seed in seeds})
    if len(distinct) == 1:
        return f"seed {distinct[0]}"
    return f"seeds {', '.join(map(str, distinct))} pooled"


def experiment_name(summary: pd.DataFrame) -> str:
    names = summary["experiment"].unique() if "experiment" in summary else []
    return str(names[0]) if len(names) == 1 else "experiment"
