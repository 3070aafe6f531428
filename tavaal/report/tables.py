"""The tables of one experiment, built from its summary (files: `table_files`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from tavaal.report.score import score_of
from tavaal.report.statistics import (
    aulc_per_seed,
    improvement_curves,
    learning_curves,
    loss_likelihood_correlation,
    t_interval,
    unlabeled_likelihood,
)
from tavaal.report.style import in_method_order

# Diagnostics of the adversarial part shown in the health table, in this order.
HEALTH_COLUMNS = [
    "vae_recon_mse",
    "mean_image_mse",
    "latent_mu_std",
    "disc_auc",
    "disc_output_mean",
    "disc_output_std",
    # TA-VAAL: how much rank signal D got (tavaal.adversarial.conditioning.rank_statistics).
    "rank_raw_std",
    "rank_input_std",
    "rank_input_informative",
    "iterations",
]


def aulc_table(
    summary: pd.DataFrame, baseline: str = "random", confidence: float = 0.95
) -> pd.DataFrame:
    """AULC per method (mean, std over seeds) and its paired-seed difference to the baseline
    with a t confidence interval. Without the baseline the difference columns are NaN."""
    per_seed = aulc_per_seed(summary)
    base = per_seed[per_seed["method"] == baseline].set_index("seed")["aulc"]
    rows = []
    for method, group in per_seed.groupby("method", sort=False):
        row = {
            "method": method,
            "aulc_mean": group["aulc"].mean(),
            "aulc_std": group["aulc"].std(),
            "seeds": len(group),
            "diff_mean": math.nan,
            "diff_ci_low": math.nan,
            "diff_ci_high": math.nan,
            "pairs": 0,
        }
        diffs = (group.set_index("seed")["aulc"] - base).dropna()
        if len(base) and len(diffs):
            low, high = t_interval(diffs.to_numpy(), confidence)
            row.update(diff_mean=diffs.mean(), diff_ci_low=low, diff_ci_high=high, pairs=len(diffs))
        rows.append(row)
    return in_method_order(pd.DataFrame(rows))


def default_targets(summary: pd.DataFrame, baseline: str = "random") -> list[float]:
    """The baseline's mean scores (accuracies, or mIoUs) at the stages after the first, floored
    to 4 decimals (so the baseline itself reaches each at its stage), sorted and without
    repeats; without the baseline, 5 evenly spaced scores."""
    curves = learning_curves(summary)
    base = curves[(curves["method"] == baseline) & (curves["stage"] > 0)]
    if len(base):
        return sorted({math.floor(v * 1e4) / 1e4 for v in base["mean"]})
    low, high = curves["mean"].min(), curves["mean"].max()
    return sorted({round(float(v), 4) for v in np.linspace(low, high, 5)})


def labels_to_reach(
    summary: pd.DataFrame, targets: Sequence[float], baseline: str = "random"
) -> pd.DataFrame:
    """Labels each method needs before its mean score (over seeds) first reaches each target
    (VAAL §4.1); NaN when it never does. saved_vs_baseline: the baseline's labels minus these.
    The target column is named by the score: target_accuracy, or target_miou."""
    target_column = f"target_{score_of(summary).column}"
    curves = learning_curves(summary)
    rows = []
    for target in targets:
        needed = {}
        for method, group in curves.groupby("method", sort=False):
            group = group.sort_values("stage")
            reached = group[group["mean"] >= target]
            needed[method] = float(reached["labels"].iloc[0]) if len(reached) else math.nan
        for method, labels in needed.items():
            saved = needed.get(baseline, math.nan) - labels
            rows.append(
                {
                    target_column: float(target),
                    "method": method,
                    "labels": labels,
                    "saved_vs_baseline": saved,
                }
            )
    frame = pd.DataFrame(rows, columns=[target_column, "method", "labels", "saved_vs_baseline"])
    return in_method_order(frame, first=target_column)


def accuracy_table(summary: pd.DataFrame, baseline: str = "random") -> pd.DataFrame:
    """Learning curves with the paired difference to the baseline, per (method, stage): the
    score's mean and std over seeds as accuracy_mean and accuracy_std (a segmentation
    experiment's: miou_mean, miou_std), the difference as diff_mean and diff_std."""
    column = score_of(summary).column
    curves = learning_curves(summary)[["method", "stage", "labels", "mean", "std", "n"]]
    curves = curves.rename(columns={"mean": f"{column}_mean", "std": f"{column}_std", "n": "seeds"})
    if baseline in set(summary["method"]):
        diff = improvement_curves(summary, baseline)[["method", "stage", "mean", "std"]]
        diff = diff.rename(columns={"mean": "diff_mean", "std": "diff_std"})
        curves = curves.merge(diff, on=["method", "stage"], how="left")
    else:
        curves["diff_mean"] = math.nan
        curves["diff_std"] = math.nan
    return in_method_order(curves)


def sampling_time_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Seconds per query (VAAL Table 1): mean, std, min, max over all queries of a method."""
    queries = summary.dropna(subset=["query_seconds"])
    table = (
        queries.groupby("method", sort=False)["query_seconds"]
        .agg(mean_seconds="mean", std_seconds="std", min_seconds="min", max_seconds="max")
        .reset_index()
    )
    table["queries"] = queries.groupby("method", sort=False).size().to_numpy()
    return in_method_order(table)


def adversarial_health_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Diagnostics of the VAE/D of every query, mean over seeds, per (method, stage).

    recon_ratio = vae_recon_mse / mean_image_mse: near 1 the VAE reconstructs no better than
    the mean image (collapsed); disc_auc near 0.5: D cannot tell labeled from unlabeled, and the
    selection is close to random (DESIGN.md, "Outputs people look at").
    """
    present = [c for c in HEALTH_COLUMNS if f"diag_{c}" in summary]
    if not present:
        return pd.DataFrame(columns=["method", "stage", "labels", "seeds"])
    columns = [f"diag_{c}" for c in present]
    rows = summary.dropna(subset=columns, how="all").copy()
    if "diag_vae_recon_mse" in rows and "diag_mean_image_mse" in rows:
        rows["diag_recon_ratio"] = rows["diag_vae_recon_mse"] / rows["diag_mean_image_mse"]
        columns.insert(present.index("mean_image_mse") + 1, "diag_recon_ratio")
    table = rows.groupby(["method", "stage"], sort=False).agg(
        labels=("labels", "first"), seeds=("seed", "count"), **{c: (c, "mean") for c in columns}
    )
    table = table.reset_index().rename(columns={c: c.removeprefix("diag_") for c in columns})
    return in_method_order(table)


def class_entropy_ranges(summary: pd.DataFrame) -> pd.DataFrame:
    """Per method, the lowest and highest class-count entropy (TA-VAAL Fig. 7a) over seeds and
    queries of the batch a query added (batch_*) and of the labeled set after it (labeled_*).
    Stage 0, the initial pool every method shares, is left out."""
    queried = summary[summary["stage"] > 0]
    table = queried.groupby("method", sort=False).agg(
        batch_min=("selected_class_entropy", "min"),
        batch_max=("selected_class_entropy", "max"),
        labeled_min=("labeled_class_entropy", "min"),
        labeled_max=("labeled_class_entropy", "max"),
    )
    return in_method_order(table.reset_index())


def adversarial_health_ranges(summary: pd.DataFrame) -> pd.DataFrame:
    """Per method with a VAE and discriminator, the lowest and highest recon_ratio and disc_auc
    over every query of every seed (see `adversarial_health_table` for what they mean)."""
    needed = ["diag_vae_recon_mse", "diag_mean_image_mse", "diag_disc_auc"]
    columns = ["method", "recon_ratio_min", "recon_ratio_max", "disc_auc_min", "disc_auc_max"]
    if not set(needed) <= set(summary):
        return pd.DataFrame(columns=columns)
    rows = summary.dropna(subset=needed)
    rows = rows.assign(recon_ratio=rows["diag_vae_recon_mse"] / rows["diag_mean_image_mse"])
    table = rows.groupby("method", sort=False).agg(
        recon_ratio_min=("recon_ratio", "min"),
        recon_ratio_max=("recon_ratio", "max"),
        disc_auc_min=("diag_disc_auc", "min"),
        disc_auc_max=("diag_disc_auc", "max"),
    )
    return in_method_order(table.reset_index()[columns])


def loss_likelihood_table(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Per method, for the query of `loss_likelihood_frames` (one seed, one stage): Spearman's ρ
    of the true loss with the likelihood of being unlabeled and its p-value, and the mean true
    loss of the selected samples next to that of all candidates (TA-VAAL Fig. 8)."""
    rows = []
    for method, frame in frames.items():
        chosen = frame["chosen"].to_numpy(bool)
        loss = frame["true_loss"].to_numpy(np.float64)
        rho, p_value = loss_likelihood_correlation(unlabeled_likelihood(frame), loss)
        rows.append(
            {
                "experiment": frame["experiment"].iloc[0],
                "method": method,
                "seed": int(frame["seed"].iloc[0]),
                "stage": int(frame["stage"].iloc[0]),
                "candidates": len(frame),
                "spearman_rho": rho,
                "p_value": p_value,
                "chosen_true_loss": float(loss[chosen].mean()) if chosen.any() else math.nan,
                "candidate_true_loss": float(loss.mean()),
            }
        )
    return in_method_order(pd.DataFrame(rows))


def oracle_errors_table(summary: pd.DataFrame, noise: float) -> pd.DataFrame:
    """What a noisy oracle (VAAL §5.2) cost each method, per stage, mean over seeds: wrong labels
    in the labeled set, wrong labels bought by queries, and the share of queried labels that were
    wrong, next to the configured noise rate (a selection that prefers samples the oracle gets
    wrong shows a share above it). Stage 0 has bought nothing: its share is NaN."""
    rows = summary.sort_values(["seed", "stage"]).copy()
    # Labels bought by the queries up to each stage: everything added after the initial pool.
    bought = rows["selected"].where(rows["stage"] >= 1, 0)
    rows["queried_labels"] = bought.groupby([rows["method"], rows["seed"]]).cumsum()
    table = rows.groupby(["method", "stage"], sort=False).agg(
        labels=("labels", "first"),
        seeds=("seed", "count"),
        wrong_labels=("wrong_labels", "mean"),
        queried_wrong_labels=("queried_wrong_labels", "mean"),
        queried_labels=("queried_labels", "mean"),
        _wrong_sum=("queried_wrong_labels", "sum"),
        _queried_sum=("queried_labels", "sum"),
    )
    table = table.reset_index()
    # Pooled over seeds; the same as the mean of the seeds' shares, as every seed buys alike.
    table["queried_wrong_share"] = (table["_wrong_sum"] / table["_queried_sum"]).where(
        table["_queried_sum"] > 0
    )
    table["oracle_noise"] = float(noise)
    return in_method_order(table.drop(columns=["_wrong_sum", "_queried_sum"]))
