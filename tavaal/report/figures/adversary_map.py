"""The adversary map figure of two-moons queries (issue 9): D's logit and D's rank input over
the plane, and the latent means, one row per replayed query (`tavaal.adversary_replay`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from tavaal.report.style import method_label, method_order

if TYPE_CHECKING:
    from tavaal.adversary_replay import AdversaryMap


def plot_adversary_map(
    x_train: np.ndarray, y_train: np.ndarray, maps: Sequence[AdversaryMap]
) -> Figure:
    """One row per query: D's logit over the plane (picks = lowest logits among the
    candidates), D's rank input over the plane (TA-VAAL) and the latent means on their first
    two principal components. Titles carry the query's stored health diagnostics. Solid line:
    the task learner's decision boundary; dashed: the Bayes boundary; open circles: the
    candidates; black: labeled; stars: picks; small grey: the pool (triangles: minority)."""
    maps = sorted(
        maps,
        key=lambda m: (method_order([q.method for q in maps]).index(m.method), m.seed, m.stage),
    )
    fig, axes = plt.subplots(len(maps), 3, figsize=(14, 4.2 * len(maps)), squeeze=False)
    x = np.asarray(x_train, dtype=np.float64)
    y = np.asarray(y_train)
    for row, item in zip(axes, maps, strict=True):
        name = f"{method_label(item.method)}, seed {item.seed}, query {item.stage}"
        health = _health_text(item.diagnostics)
        ax = row[0]
        _plane(ax, x, y, item, item.disc_logit, "RdBu", "D logit (low = picked first)")
        ax.set_title(f"{name}: D logit over the plane\n{health}", fontsize=9)
        ax = row[1]
        if item.rank_input is not None:
            _plane(ax, x, y, item, item.rank_input, "viridis", "D's rank input r(x)")
            ax.set_title(f"{name}: rank input of D (high = high predicted loss)", fontsize=9)
        else:
            ax.axis("off")
            ax.text(0.5, 0.5, "VAAL: D sees mu only", ha="center", va="center")
        ax = row[2]
        chosen = np.isin(item.candidates, item.chosen)
        ax.scatter(*item.latent_candidates[~chosen].T, s=8, color="grey", label="candidates")
        ax.scatter(*item.latent_labeled.T, s=14, color="black", label="labeled")
        ax.scatter(
            *item.latent_candidates[chosen].T, s=40, marker="*", color="crimson", label="selected"
        )
        share = item.explained_variance
        ax.set_xlabel(f"latent PC 1 ({share[0]:.0%} of variance)")
        ax.set_ylabel(f"latent PC 2 ({share[1]:.0%})")
        ax.set_title(f"{name}: latent means mu", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle("what the adversary learned (replayed query; issue 9)")
    fig.tight_layout()
    return fig


def _plane(ax, x, y, item: AdversaryMap, values, cmap: str, label: str) -> None:
    finite = values[np.isfinite(values)]
    if cmap == "RdBu" and len(finite):
        bound = float(np.max(np.abs(finite))) or 1.0
        mesh = ax.pcolormesh(
            item.grid_x, item.grid_y, values, cmap=cmap, vmin=-bound, vmax=bound, shading="auto"
        )
    else:
        mesh = ax.pcolormesh(item.grid_x, item.grid_y, values, cmap=cmap, shading="auto")
    ax.figure.colorbar(mesh, ax=ax, label=label, fraction=0.046)
    if item.class1_prob is not None:
        ax.contour(
            item.grid_x, item.grid_y, item.class1_prob, levels=[0.5], colors="k", linewidths=1
        )
    ax.contour(
        item.grid_x,
        item.grid_y,
        item.true_class1_prob,
        levels=[0.5],
        colors="k",
        linewidths=1,
        linestyles="dashed",
    )
    ax.scatter(x[y == 0, 0], x[y == 0, 1], s=2, color="dimgrey", alpha=0.4, marker="o")
    ax.scatter(x[y == 1, 0], x[y == 1, 1], s=6, color="dimgrey", alpha=0.6, marker="^")
    ax.scatter(
        x[item.candidates, 0], x[item.candidates, 1], s=10, facecolor="none", edgecolor="grey"
    )
    ax.scatter(x[item.labeled, 0], x[item.labeled, 1], s=14, color="black")
    ax.scatter(x[item.chosen, 0], x[item.chosen, 1], s=40, marker="*", color="crimson")
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")


def _health_text(diagnostics: dict) -> str:
    if not diagnostics:
        return ""
    parts = []
    if "vae_recon_mse" in diagnostics and diagnostics.get("mean_image_mse"):
        ratio = diagnostics["vae_recon_mse"] / diagnostics["mean_image_mse"]
        parts.append(f"recon/mean {ratio:.2f}")
    if "latent_mu_std" in diagnostics:
        parts.append(f"latent std {diagnostics['latent_mu_std']:.2f}")
    if "disc_auc" in diagnostics:
        parts.append(f"D AUC {diagnostics['disc_auc']:.2f}")
    return ", ".join(parts)
