"""The adversarial part at the last query: discriminator outputs (TA-VAAL Fig. 7b) and true
loss against the likelihood of being unlabeled (Fig. 8)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from tavaal.pool import read_scores
from tavaal.report.figures.common import seeds_shown
from tavaal.report.statistics import loss_likelihood_correlation, unlabeled_likelihood
from tavaal.report.style import method_color, method_label, method_order

# Cross-entropies in float32 below this are rounding noise around 0; the loss axis of the
# loss-vs-likelihood figure is linear up to here (zeros stay visible) and logarithmic above.
LOSS_LINEAR_BELOW = 1e-6


def plot_discriminator_histogram(frames: Mapping[str, pd.DataFrame], stage: int) -> Figure:
    """Histogram of the discriminator's P(labeled) over the candidates (TA-VAAL Fig. 7b); every
    frame has a seed column, and the title names the seeds pooled."""
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.linspace(0.0, 1.0, 51)
    for method in method_order(frames):
        values = frames[method]["disc_output"].to_numpy(np.float64)
        ax.hist(
            values,
            bins=bins,
            color=method_color(method),
            alpha=0.5,
            label=f"{method_label(method)} (std {values.std():.3f})",
        )
    ax.set_xlabel("discriminator output P(labeled)")
    ax.set_ylabel("candidates")
    ax.set_title(f"discriminator outputs at the last query (stage {stage}), {_seeds(frames)}")
    ax.legend(fontsize=8)
    return fig


def plot_loss_vs_likelihood(frames: Mapping[str, pd.DataFrame], stage: int) -> Figure:
    """True task loss against the likelihood of being unlabeled, 1 - P(labeled) (TA-VAAL Fig. 8).

    Each frame needs disc_output, true_loss, chosen and seed. The title of a panel gives
    Spearman's ρ of the two over all candidates. Losses span many decades (a confident task
    learner gets most candidates right with a loss of 0 to float precision and a few wrong with
    a loss of 10-100), so the loss axis is logarithmic above `LOSS_LINEAR_BELOW` and linear
    below it, where exact zeros lie.
    """
    methods = method_order(frames)
    fig, axes = plt.subplots(1, len(methods), figsize=(5 * len(methods), 4), squeeze=False)
    for ax, method in zip(axes[0], methods, strict=True):
        frame = frames[method]
        likelihood = 1.0 - frame["disc_output"].to_numpy(np.float64)
        loss = frame["true_loss"].to_numpy(np.float64)
        chosen = frame["chosen"].to_numpy(bool)
        near_zero = int(np.sum(loss < LOSS_LINEAR_BELOW))
        label = "candidates"
        if near_zero:
            label += f" ({near_zero} of {len(loss)} with loss < {_power_of_ten(LOSS_LINEAR_BELOW)})"
        ax.scatter(likelihood[~chosen], loss[~chosen], s=6, color="grey", alpha=0.5, label=label)
        ax.scatter(likelihood[chosen], loss[chosen], s=12, color="crimson", label="selected")
        ax.set_yscale("symlog", linthresh=LOSS_LINEAR_BELOW, linscale=0.5)
        rho, _ = loss_likelihood_correlation(unlabeled_likelihood(frame), loss)
        ax.set_title(f"{method_label(method)} (Spearman ρ = {rho:.2f})")
        ax.set_xlabel("likelihood of being unlabeled, 1 − P(labeled)")
        ax.set_ylabel(
            f"true loss (cross-entropy, log scale above {_power_of_ten(LOSS_LINEAR_BELOW)})"
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"true loss vs likelihood at query stage {stage}, {_seeds(frames)}")
    return fig


def _power_of_ten(value: float) -> str:
    return f"$10^{{{round(math.log10(value))}}}$"


def _seeds(frames: Mapping[str, pd.DataFrame]) -> str:
    return seeds_shown(seed for frame in frames.values() for seed in frame["seed"])


def read_scores_by_method(paths: Iterable[str | Path]) -> dict[str, pd.DataFrame]:
    """Scores files grouped by the method in their metadata; seeds concatenated."""
    frames: dict[str, list[pd.DataFrame]] = {}
    for path in paths:
        scores, meta = read_scores(path)
        frames.setdefault(meta["method"], []).append(scores.assign(seed=int(meta["seed"])))
    return {m: pd.concat(parts, ignore_index=True) for m, parts in frames.items()}


def discriminator_histogram_figure(scores_paths: Iterable[str | Path], stage: int) -> Figure:
    return plot_discriminator_histogram(read_scores_by_method(scores_paths), stage)


def true_losses(exp, method: str, model_path, dataset, indices: np.ndarray, device="cpu"):
    """The loss of the stage's task learner on `indices` against the true labels, as the stage
    runner computes it (`Task.true_loss`: cross-entropy, or a segmentation image's mean pixel
    cross-entropy against its mask)."""
    from tavaal.strategies import strategy_class
    from tavaal.tasks import task_of
    from tavaal.training import load_task_models

    indices = np.asarray(indices, dtype=np.int64)
    recipe = strategy_class(method).recipe
    trained = load_task_models(Path(model_path), exp, recipe, dataset.info, device)
    model = trained.models[0]
    device = model.classifier.weight.device
    batch_size = exp.query.inference_batch_size
    task = task_of(dataset.info)
    return task.true_loss(model, dataset, indices, device, batch_size).astype(np.float64)


def loss_likelihood_frames(
    exp,
    scores_paths: Sequence[str | Path],
    model_paths: Sequence[str | Path],
    dataset_dir: str | Path,
    device: str = "cpu",
) -> dict[str, pd.DataFrame]:
    """The scores of one query per method, with experiment, seed, stage and true_loss columns.
    The true loss comes from the scores when the query had the task model, else it is computed
    here from the same stage's model.pt (VAAL never reads the task model)."""
    from tavaal.stage import load_experiment_dataset

    dataset = load_experiment_dataset(exp, Path(dataset_dir).parent)
    frames = {}
    for scores_path, model_path in zip(scores_paths, model_paths, strict=True):
        scores, meta = read_scores(scores_path)
        if "true_loss" not in scores:
            index = scores["index"].to_numpy(np.int64)
            scores = scores.assign(
                true_loss=true_losses(exp, meta["method"], model_path, dataset, index, device)
            )
        frames[meta["method"]] = scores.assign(
            experiment=meta["experiment"], seed=int(meta["seed"]), stage=int(meta["stage"])
        )
    return frames
