"""What every figure shares: saving, mean-and-band curves, the experiment's name."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from tavaal.report.style import method_color, method_label


def save_figure(fig: Figure, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def draw_curve(ax, curves: pd.DataFrame, method: str) -> None:
    group = curves[curves["method"] == method].sort_values("stage")
    x = group["labels"].to_numpy(np.float64)
    mean = group["mean"].to_numpy(np.float64)
    std = np.nan_to_num(group["std"].to_numpy(np.float64))
    color = method_color(method)
    ax.plot(x, mean, marker="o", markersize=3, color=color, label=method_label(method))
    ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.15, linewidth=0)


def experiment_name(summary: pd.DataFrame) -> str:
    names = summary["experiment"].unique() if "experiment" in summary else []
    return str(names[0]) if len(names) == 1 else "experiment"
