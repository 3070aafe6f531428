"""What the queries selected: class-count entropy of the labeled set and of each added batch
(TA-VAAL Fig. 7a) and, on two moons, the selected points (Fig. 1)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from tavaal.pool import read_labeled
from tavaal.report.figures.common import (
    draw_curve,
    experiment_name,
    label_count_axis,
    seeds_shown,
)
from tavaal.report.score import score_of
from tavaal.report.statistics import learning_curves
from tavaal.report.style import method_label, method_order


def plot_class_entropy(summary: pd.DataFrame) -> Figure:
    """Class-count entropy of the labeled set and of each selected batch (TA-VAAL Fig. 7a):
    mean over seeds, band from the lowest to the highest seed. An entropy lies in [0, log K]
    and so does that band; mean ± std would not (few seeds, values near either bound). In a
    segmentation experiment the classes are counted over the masks' labeled pixels
    (class-pixel entropy)."""
    entropy = score_of(summary).class_entropy
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    panels = [
        ("labeled_class_entropy", "labeled set"),
        ("selected_class_entropy", "samples added at the stage"),
    ]
    for ax, (column, what) in zip(axes, panels, strict=True):
        curves = learning_curves(summary, column)
        for method in method_order(curves["method"]):
            draw_curve(ax, curves, method, band="range")
        if "num_classes" in summary:
            ax.axhline(
                math.log(int(summary["num_classes"].iloc[0])),
                color="grey",
                linestyle="--",
                linewidth=1,
                label="_balanced",
            )
        label_count_axis(ax, curves["labels"])
        ax.set_ylabel(f"{entropy} (nats)")
        ax.set_title(f"{what}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(
        f"{experiment_name(summary)}: {entropy}, mean over seeds, "
        "band: lowest to highest seed (dashed: balanced, log K)"
    )
    return fig


@dataclass
class SelectionPanel:
    """One method's panel of the two-moons figure."""

    method: str
    seed: int
    labeled: np.ndarray  # indices labeled before the query
    chosen: np.ndarray  # indices the query selected
    grid_x: np.ndarray  # (R, R) grid coordinates
    grid_y: np.ndarray
    grid_prob: np.ndarray  # (R, R) P(class 1) of the stage's task learner


def plot_selection(
    x_train: np.ndarray, y_train: np.ndarray, panels: Sequence[SelectionPanel], stage: int
) -> Figure:
    """Two moons: pool, labeled set, picks and decision boundary per method (TA-VAAL Fig. 1)."""
    panels = sorted(panels, key=lambda p: method_order([q.method for q in panels]).index(p.method))
    fig, axes = plt.subplots(
        1, len(panels), figsize=(4.2 * len(panels), 4), squeeze=False, sharey=True
    )
    x = np.asarray(x_train, dtype=np.float64)
    y = np.asarray(y_train)
    for ax, panel in zip(axes[0], panels, strict=True):
        ax.contourf(
            panel.grid_x,
            panel.grid_y,
            panel.grid_prob,
            levels=[0, 0.5, 1],
            colors=["#dbe9f6", "#fbe3d6"],
            alpha=0.8,
        )
        ax.contour(
            panel.grid_x, panel.grid_y, panel.grid_prob, levels=[0.5], colors="k", linewidths=1
        )
        for cls, marker in ((0, "o"), (1, "^")):
            members = y == cls
            ax.scatter(
                x[members, 0],
                x[members, 1],
                s=5,
                marker=marker,
                color="grey",
                alpha=0.35,
                label=f"_pool class {cls}",
            )
        ax.scatter(x[panel.labeled, 0], x[panel.labeled, 1], s=14, color="black", label="labeled")
        ax.scatter(
            x[panel.chosen, 0],
            x[panel.chosen, 1],
            s=40,
            marker="*",
            color="crimson",
            label="selected",
        )
        ax.set_title(method_label(panel.method))
        ax.set_xlabel("x1")
    axes[0][0].set_ylabel("x2")
    axes[0][0].legend(fontsize=8, loc="lower left")
    fig.suptitle(
        f"points selected at query stage {stage}, {seeds_shown(p.seed for p in panels)} "
        "(grey: pool, triangles: minority class)"
    )
    return fig


def decision_grid(
    exp,
    method: str,
    model_path,
    dataset,
    resolution: int = 150,
    margin: float = 0.5,
    device="cpu",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """P(class 1) of a stage's task learner on a grid over the 2-D training data."""
    import torch

    from tavaal.inference import forward_pool
    from tavaal.strategies import strategy_class
    from tavaal.training import load_task_models

    x = np.asarray(dataset.x_train, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"decision_grid needs 2-D points, got shape {x.shape}")
    lo, hi = x.min(axis=0) - margin, x.max(axis=0) + margin
    gx, gy = np.meshgrid(
        np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution)
    )
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)
    recipe = strategy_class(method).recipe
    trained = load_task_models(Path(model_path), exp, recipe, dataset.info, device)
    model = trained.models[0]
    out = forward_pool(
        model, grid, np.arange(len(grid)), dataset.info, model.classifier.weight.device, 4096
    )
    prob = torch.softmax(torch.from_numpy(out.logits), dim=1)[:, 1].numpy()
    return gx, gy, prob.reshape(gx.shape)


def selection_figure(
    exp,
    labeled_paths: Sequence[str | Path],
    model_paths: Sequence[str | Path],
    dataset_dir: str | Path,
    stage: int,
    device: str = "cpu",
) -> Figure:
    """Fig. 1 from files: `labeled_paths` are the index files of stage+1 (one per method),
    `model_paths` the task checkpoints of `stage` whose decision boundary is drawn."""
    from tavaal.stage import load_experiment_dataset

    dataset = load_experiment_dataset(exp, Path(dataset_dir).parent)
    panels = []
    for labeled_path, model_path in zip(labeled_paths, model_paths, strict=True):
        labeled = read_labeled(labeled_path, expected_stage=stage + 1)
        method = labeled.metadata["method"]
        added = labeled.table["stage_added"].to_numpy()
        gx, gy, prob = decision_grid(exp, method, model_path, dataset, device=device)
        panels.append(
            SelectionPanel(
                method=method,
                seed=int(labeled.metadata["seed"]),
                labeled=labeled.indices[added <= stage],
                chosen=labeled.indices[added == stage + 1],
                grid_x=gx,
                grid_y=gy,
                grid_prob=prob,
            )
        )
    return plot_selection(dataset.x_train, dataset.y_train, panels, stage)
