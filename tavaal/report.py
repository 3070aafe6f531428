"""Aggregation, statistics, tables and figures of finished experiments.

`build_summary` turns the per-stage files (metrics.json, labeled.parquet, scores.parquet) of one
experiment into one tidy frame, one row per (method, seed, stage). Every table and most figures
are functions of that frame alone, so they are unit-testable on hand-made frames; the figures
that need a task model (true loss, decision boundary) load the stage checkpoint through the
library. Plot functions return the matplotlib Figure so tests can inspect what was drawn.

Comparisons with the baseline (random sampling by default) are paired by seed: every method of
a seed starts from the same initial pool (tavaal.pool.initial_indices), so the difference of two
methods at a stage of one seed removes the luck of that pool (TA-VAAL Fig. 3-5).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from tavaal.pool import class_count_entropy, read_labeled, read_scores  # noqa: E402

KEYS = ["experiment", "method", "seed", "stage"]
# Display order and names of the methods (papers' spelling).
METHOD_LABELS = {
    "random": "Random",
    "entropy": "Entropy",
    "bald": "BALD",
    "var_ratio": "Var. ratio (MC-dropout)",
    "ensemble_varr": "Ensemble w. VarR",
    "coreset": "Core-set",
    "lloss": "Learning loss",
    "lloss_v2": "Learning loss v2",
    "vaal": "VAAL",
    "tavaal": "TA-VAAL",
}
# Diagnostics of the adversarial part shown in the health table, in this order.
HEALTH_COLUMNS = [
    "vae_recon_mse",
    "mean_image_mse",
    "latent_mu_std",
    "disc_auc",
    "disc_output_mean",
    "disc_output_std",
    "iterations",
]


def method_order(methods: Iterable[str]) -> list[str]:
    """Methods in the papers' order (baselines first, TA-VAAL last), unknown names at the end."""
    known = list(METHOD_LABELS)
    methods = list(dict.fromkeys(methods))
    return sorted(methods, key=lambda m: (known.index(m) if m in known else len(known), m))


def method_label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def method_color(method: str):
    """One fixed colour per method, the same in every figure of every experiment."""
    known = list(METHOD_LABELS)
    position = known.index(method) if method in known else len(known) + hash(method) % 5
    return plt.get_cmap("tab10")(position % 10)


# ------------------------------------------------------------------------------ summary


def read_metrics(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per metrics.json; the per-class accuracies become min_class_accuracy."""
    rows = []
    for path in paths:
        data = json.loads(Path(path).read_text())
        per_class = [v for v in data.get("per_class_accuracy") or [] if v is not None]
        row = {
            key: value
            for key, value in data.items()
            if key != "per_class_accuracy" and not isinstance(value, list | dict)
        }
        row["min_class_accuracy"] = min(per_class) if per_class else math.nan
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        raise ValueError("no metrics files to aggregate")
    return frame


def selection_statistics(labeled_paths: Iterable[str | Path], num_classes: int) -> pd.DataFrame:
    """Per (method, seed, stage), from the last index file of each run (it holds every stage).

    selected_class_entropy: class-count entropy of the samples added at that stage (stage 0: the
    initial pool); labeled_class_entropy: of the whole labeled set at that stage (TA-VAAL Fig. 7a).
    """
    rows = []
    for path in labeled_paths:
        labeled = read_labeled(path)
        meta = labeled.metadata
        added = labeled.table["stage_added"].to_numpy()
        labels = labeled.labels
        for stage in range(labeled.stage + 1):
            batch = labels[added == stage]
            rows.append(
                {
                    "experiment": meta["experiment"],
                    "method": meta["method"],
                    "seed": int(meta["seed"]),
                    "stage": stage,
                    "selected": len(batch),
                    "selected_class_entropy": class_count_entropy(batch, num_classes),
                    "labeled_class_entropy": class_count_entropy(
                        labels[added <= stage], num_classes
                    ),
                }
            )
    return pd.DataFrame(rows)


def query_statistics(scores_paths: Iterable[str | Path]) -> pd.DataFrame:
    """Per query (method, seed, stage): time, candidates, diagnostics (diag_*), true losses."""
    rows = []
    for path in scores_paths:
        scores, meta = read_scores(path)
        row = {
            "experiment": meta["experiment"],
            "method": meta["method"],
            "seed": int(meta["seed"]),
            "stage": int(meta["stage"]),
            "query_seconds": float(meta["query_seconds"]),
            "candidates": len(scores),
        }
        for key, value in sorted((meta.get("diagnostics") or {}).items()):
            row[f"diag_{key}"] = float(value)
        if "true_loss" in scores:
            chosen = scores["chosen"].to_numpy(bool)
            loss = scores["true_loss"].to_numpy(np.float64)
            # Task awareness in one number: do the picks have a higher loss than the candidates?
            row["chosen_true_loss"] = float(loss[chosen].mean()) if chosen.any() else math.nan
            row["candidate_true_loss"] = float(loss.mean())
        rows.append(row)
    return pd.DataFrame(rows, columns=None if rows else KEYS)


def build_summary(
    metrics_paths: Iterable[str | Path],
    labeled_paths: Iterable[str | Path],
    scores_paths: Iterable[str | Path],
    num_classes: int,
) -> pd.DataFrame:
    """Every metric row of one experiment: one row per (method, seed, stage).

    Query columns (query_seconds, diag_*, ...) belong to the query made at that stage and are
    empty at the last stage, which has no query.
    """
    metrics = read_metrics(metrics_paths).drop(columns=["labeled_class_entropy"], errors="ignore")
    selection = selection_statistics(labeled_paths, num_classes)
    queries = query_statistics(scores_paths)
    summary = metrics.merge(selection, on=KEYS, how="left", validate="one_to_one")
    summary = summary.merge(queries, on=KEYS, how="left", validate="one_to_one")
    summary["num_classes"] = num_classes
    summary["seed"] = summary["seed"].astype(np.int64)
    summary["stage"] = summary["stage"].astype(np.int64)
    first = KEYS + ["labels", "accuracy", "test_loss", "train_seconds", "query_seconds"]
    columns = [c for c in first if c in summary] + [c for c in summary if c not in first]
    order = {m: i for i, m in enumerate(method_order(summary["method"]))}
    summary = summary.assign(_order=summary["method"].map(order))
    summary = summary.sort_values(["_order", "seed", "stage"]).drop(columns="_order")
    return summary[columns].reset_index(drop=True)


def aggregate_experiment(
    metrics_paths: Sequence[str | Path],
    labeled_paths: Sequence[str | Path],
    scores_paths: Sequence[str | Path],
    dataset_dir: str | Path,
) -> pd.DataFrame:
    """`build_summary` with the number of classes read from the prepared dataset."""
    from tavaal.data import load_dataset

    dataset_dir = Path(dataset_dir)
    info = load_dataset(dataset_dir.name, dataset_dir.parent).info
    return build_summary(metrics_paths, labeled_paths, scores_paths, info.num_classes)


def write_summary(summary: pd.DataFrame, path: str | Path) -> None:
    """Parquet, written atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        summary.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_summary(path: str | Path) -> pd.DataFrame:
    return pd.read_parquet(path)


# --------------------------------------------------------------------------- statistics


def learning_curves(summary: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """Mean, standard deviation (ddof 1) and count over seeds per (method, stage)."""
    grouped = summary.groupby(["method", "stage"], sort=False)
    curves = grouped.agg(
        labels=("labels", "first"),
        mean=(metric, "mean"),
        std=(metric, "std"),
        n=(metric, "count"),
    ).reset_index()
    return _ordered(curves)


def paired_differences(
    summary: pd.DataFrame, baseline: str = "random", metric: str = "accuracy"
) -> pd.DataFrame:
    """metric(method) - metric(baseline) for every (method, seed, stage) the baseline also has."""
    if baseline not in set(summary["method"]):
        raise ValueError(f"baseline method {baseline!r} is not in the summary")
    base = summary.loc[summary["method"] == baseline, ["seed", "stage", metric]]
    base = base.rename(columns={metric: "baseline"})
    pairs = summary[["method", "seed", "stage", "labels", metric]].merge(
        base, on=["seed", "stage"], how="inner"
    )
    pairs["difference"] = pairs[metric] - pairs["baseline"]
    return _ordered(pairs[["method", "seed", "stage", "labels", "difference"]])


def improvement_curves(
    summary: pd.DataFrame, baseline: str = "random", metric: str = "accuracy"
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
    return _ordered(curves)


def area_under_curve(labels: Sequence[float], values: Sequence[float]) -> float:
    """Trapezoid area under the learning curve divided by the label range: the curve's mean
    accuracy over the labels spent. One point: its value."""
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


def aulc_per_seed(summary: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    rows = [
        {"method": method, "seed": seed, "aulc": area_under_curve(g["labels"], g[metric])}
        for (method, seed), g in summary.groupby(["method", "seed"], sort=False)
    ]
    return _ordered(pd.DataFrame(rows))


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Student-t confidence interval of the mean; NaNs when fewer than two values."""
    from scipy import stats

    x = np.asarray(values, dtype=np.float64)
    if len(x) < 2:
        return math.nan, math.nan
    mean = float(x.mean())
    half = float(stats.t.ppf((1 + confidence) / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean - half, mean + half


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
    return _ordered(pd.DataFrame(rows))


def default_targets(summary: pd.DataFrame, baseline: str = "random") -> list[float]:
    """The baseline's mean accuracies at the stages after the first, floored to 4 decimals (so
    the baseline itself reaches each at its stage), sorted and without repeats; without the
    baseline, 5 evenly spaced accuracies."""
    curves = learning_curves(summary)
    base = curves[(curves["method"] == baseline) & (curves["stage"] > 0)]
    if len(base):
        return sorted({math.floor(v * 1e4) / 1e4 for v in base["mean"]})
    low, high = curves["mean"].min(), curves["mean"].max()
    return sorted({round(float(v), 4) for v in np.linspace(low, high, 5)})


def labels_to_reach(
    summary: pd.DataFrame, targets: Sequence[float], baseline: str = "random"
) -> pd.DataFrame:
    """Labels each method needs before its mean accuracy (over seeds) first reaches each target
    (VAAL §4.1); NaN when it never does. saved_vs_baseline: the baseline's labels minus these."""
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
                    "target_accuracy": float(target),
                    "method": method,
                    "labels": labels,
                    "saved_vs_baseline": saved,
                }
            )
    frame = pd.DataFrame(rows, columns=["target_accuracy", "method", "labels", "saved_vs_baseline"])
    return _ordered(frame, first="target_accuracy")


def accuracy_table(summary: pd.DataFrame, baseline: str = "random") -> pd.DataFrame:
    """Learning curves with the paired difference to the baseline, per (method, stage)."""
    curves = learning_curves(summary).rename(
        columns={"mean": "accuracy_mean", "std": "accuracy_std", "n": "seeds"}
    )
    if baseline in set(summary["method"]):
        diff = improvement_curves(summary, baseline)[["method", "stage", "mean", "std"]]
        diff = diff.rename(columns={"mean": "diff_mean", "std": "diff_std"})
        curves = curves.merge(diff, on=["method", "stage"], how="left")
    else:
        curves["diff_mean"] = math.nan
        curves["diff_std"] = math.nan
    return _ordered(curves)


def sampling_time_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Seconds per query (VAAL Table 1): mean, std, min, max over all queries of a method."""
    queries = summary.dropna(subset=["query_seconds"])
    table = (
        queries.groupby("method", sort=False)["query_seconds"]
        .agg(mean_seconds="mean", std_seconds="std", min_seconds="min", max_seconds="max")
        .reset_index()
    )
    table["queries"] = queries.groupby("method", sort=False).size().to_numpy()
    return _ordered(table)


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
    return _ordered(table)


def _ordered(frame: pd.DataFrame, first: str | None = None) -> pd.DataFrame:
    if frame.empty or "method" not in frame:
        return frame.reset_index(drop=True)
    rank = {m: i for i, m in enumerate(method_order(frame["method"]))}
    keys = ([first] if first else []) + ["_rank"] + [c for c in ("seed", "stage") if c in frame]
    frame = frame.assign(_rank=frame["method"].map(rank)).sort_values(keys, kind="stable")
    return frame.drop(columns="_rank").reset_index(drop=True)


# ------------------------------------------------------------------------------- tables


def markdown_table(frame: pd.DataFrame, formats: Mapping[str, str] | None = None) -> str:
    """GitHub-flavoured markdown; NaN shown as an em dash."""
    formats = dict(formats or {})

    def cell(column, value) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "—"
        if column in formats:
            return format(value, formats[column])
        if isinstance(value, float | np.floating):
            return f"{value:.4g}"
        return str(value)

    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = [
        "| " + " | ".join(cell(c, v) for c, v in zip(frame.columns, row, strict=True)) + " |"
        for row in frame.itertuples(index=False)
    ]
    return "\n".join([header, rule, *body]) + "\n"


def write_table(
    frame: pd.DataFrame,
    csv_path: str | Path,
    md_path: str | Path,
    markdown: str | None = None,
    title: str | None = None,
) -> None:
    """The frame as CSV and as markdown (`markdown` replaces the default rendering)."""
    for path in (csv_path, md_path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(csv_path, index=False, float_format="%.6g")
    text = markdown if markdown is not None else markdown_table(frame)
    Path(md_path).write_text((f"## {title}\n\n" if title else "") + text)


def accuracy_markdown(table: pd.DataFrame) -> str:
    """Labels x methods, test accuracy in percent "mean ± std"; paired difference in brackets."""
    wide = {}
    for row in table.itertuples(index=False):
        text = f"{100 * row.accuracy_mean:.1f} ± {_pct(row.accuracy_std)}"
        if not math.isnan(row.diff_mean) and row.diff_mean != 0:
            text += f" ({100 * row.diff_mean:+.1f})"
        wide.setdefault(int(row.labels), {})[method_label(row.method)] = text
    frame = pd.DataFrame.from_dict(wide, orient="index").rename_axis("labels").reset_index()
    return markdown_table(frame)


def _pct(value: float) -> str:
    return "—" if math.isnan(value) else f"{100 * value:.1f}"


# ------------------------------------------------------------------------------ figures


def save_figure(fig: Figure, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def _curve(ax, curves: pd.DataFrame, method: str) -> None:
    group = curves[curves["method"] == method].sort_values("stage")
    x = group["labels"].to_numpy(np.float64)
    mean = group["mean"].to_numpy(np.float64)
    std = np.nan_to_num(group["std"].to_numpy(np.float64))
    color = method_color(method)
    ax.plot(x, mean, marker="o", markersize=3, color=color, label=method_label(method))
    ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.15, linewidth=0)


def plot_accuracy(summary: pd.DataFrame, title: str | None = None) -> Figure:
    """Absolute accuracy against labels, mean ± std over seeds (TA-VAAL Fig. 11-12)."""
    curves = learning_curves(summary)
    fig, ax = plt.subplots(figsize=(6, 4))
    for method in method_order(curves["method"]):
        _curve(ax, curves.assign(mean=100 * curves["mean"], std=100 * curves["std"]), method)
    ax.set_xlabel("labeled samples")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title or f"{_experiment(summary)}: accuracy (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def plot_improvement(summary: pd.DataFrame, baseline: str = "random") -> Figure:
    """Accuracy minus the baseline's, paired by seed, mean ± std (TA-VAAL Fig. 3-5)."""
    curves = improvement_curves(summary, baseline)
    curves = curves.assign(mean=100 * curves["mean"], std=100 * curves["std"])
    fig, ax = plt.subplots(figsize=(6, 4))
    for method in method_order(curves["method"]):
        _curve(ax, curves, method)
    ax.set_xlabel("labeled samples")
    ax.set_ylabel(f"accuracy − {method_label(baseline)} (percentage points)")
    ax.set_title(f"{_experiment(summary)}: improvement over {method_label(baseline)}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def plot_class_entropy(summary: pd.DataFrame) -> Figure:
    """Class-count entropy of the labeled set and of each selected batch (TA-VAAL Fig. 7a)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    panels = [
        ("labeled_class_entropy", "labeled set"),
        ("selected_class_entropy", "samples added at the stage"),
    ]
    for ax, (column, what) in zip(axes, panels, strict=True):
        curves = learning_curves(summary, column)
        for method in method_order(curves["method"]):
            _curve(ax, curves, method)
        if "num_classes" in summary:
            ax.axhline(
                math.log(int(summary["num_classes"].iloc[0])),
                color="grey",
                linestyle="--",
                linewidth=1,
                label="_balanced",
            )
        ax.set_xlabel("labeled samples")
        ax.set_ylabel("class-count entropy (nats)")
        ax.set_title(f"{what}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{_experiment(summary)}: class-count entropy (dashed: balanced)")
    return fig


def plot_discriminator_histogram(frames: Mapping[str, pd.DataFrame], stage: int) -> Figure:
    """Histogram of the discriminator's P(labeled) over the candidates (TA-VAAL Fig. 7b)."""
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
    ax.set_title(f"discriminator outputs at the last query (stage {stage})")
    ax.legend(fontsize=8)
    return fig


def plot_loss_vs_likelihood(frames: Mapping[str, pd.DataFrame], stage: int) -> Figure:
    """True task loss against the likelihood of being unlabeled, 1 - P(labeled) (TA-VAAL Fig. 8).

    Each frame needs disc_output, true_loss and chosen. The title of a panel gives the Spearman
    correlation of the two over all candidates.
    """
    from scipy import stats

    methods = method_order(frames)
    fig, axes = plt.subplots(1, len(methods), figsize=(5 * len(methods), 4), squeeze=False)
    for ax, method in zip(axes[0], methods, strict=True):
        frame = frames[method]
        likelihood = 1.0 - frame["disc_output"].to_numpy(np.float64)
        loss = frame["true_loss"].to_numpy(np.float64)
        chosen = frame["chosen"].to_numpy(bool)
        ax.scatter(
            likelihood[~chosen], loss[~chosen], s=6, color="grey", alpha=0.5, label="candidates"
        )
        ax.scatter(likelihood[chosen], loss[chosen], s=12, color="crimson", label="selected")
        rho = stats.spearmanr(likelihood, loss).statistic if len(loss) > 2 else math.nan
        ax.set_title(f"{method_label(method)} (Spearman ρ = {rho:.2f})")
        ax.set_xlabel("likelihood of being unlabeled, 1 − P(labeled)")
        ax.set_ylabel("true loss (cross-entropy)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"true loss vs likelihood at query stage {stage}")
    return fig


@dataclass
class SelectionPanel:
    """One method's panel of the two-moons figure."""

    method: str
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
    fig.suptitle(f"points selected at query stage {stage} (grey: pool, triangles: minority class)")
    return fig


def _experiment(summary: pd.DataFrame) -> str:
    names = summary["experiment"].unique() if "experiment" in summary else []
    return str(names[0]) if len(names) == 1 else "experiment"


# ------------------------------------------------ figures that read files and task models


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
    """Cross-entropy of the stage's task learner on `indices` against the oracle labels."""
    from tavaal.inference import forward_pool, per_sample_loss
    from tavaal.pool import oracle_labels
    from tavaal.training import load_task_models

    indices = np.asarray(indices, dtype=np.int64)
    trained = load_task_models(Path(model_path), exp, method, dataset.info, device)
    out = forward_pool(
        trained.models[0],
        dataset.x_train,
        indices,
        dataset.info,
        trained.models[0].classifier.weight.device,
        exp.query.inference_batch_size,
    )
    return per_sample_loss(out.logits, oracle_labels(dataset.y_train, indices)).astype(np.float64)


def loss_vs_likelihood_figure(
    exp,
    scores_paths: Sequence[str | Path],
    model_paths: Sequence[str | Path],
    dataset_dir: str | Path,
    stage: int,
    device: str = "cpu",
) -> Figure:
    """Fig. 8 from files: true_loss from the scores when the query had the task model, else
    computed here from the same stage's model.pt (VAAL never reads the task model)."""
    from tavaal.data import load_dataset

    dataset_dir = Path(dataset_dir)
    dataset = load_dataset(dataset_dir.name, dataset_dir.parent)
    frames = {}
    for scores_path, model_path in zip(scores_paths, model_paths, strict=True):
        scores, meta = read_scores(scores_path)
        if "true_loss" not in scores:
            index = scores["index"].to_numpy(np.int64)
            scores = scores.assign(
                true_loss=true_losses(exp, meta["method"], model_path, dataset, index, device)
            )
        frames[meta["method"]] = scores
    return plot_loss_vs_likelihood(frames, stage)


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
    from tavaal.training import load_task_models

    x = np.asarray(dataset.x_train, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"decision_grid needs 2-D points, got shape {x.shape}")
    lo, hi = x.min(axis=0) - margin, x.max(axis=0) + margin
    gx, gy = np.meshgrid(
        np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution)
    )
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)
    trained = load_task_models(Path(model_path), exp, method, dataset.info, device)
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
    from tavaal.data import load_dataset

    dataset_dir = Path(dataset_dir)
    dataset = load_dataset(dataset_dir.name, dataset_dir.parent)
    panels = []
    for labeled_path, model_path in zip(labeled_paths, model_paths, strict=True):
        labeled = read_labeled(labeled_path, expected_stage=stage + 1)
        method = labeled.metadata["method"]
        added = labeled.table["stage_added"].to_numpy()
        gx, gy, prob = decision_grid(exp, method, model_path, dataset, device=device)
        panels.append(
            SelectionPanel(
                method=method,
                labeled=labeled.indices[added <= stage],
                chosen=labeled.indices[added == stage + 1],
                grid_x=gx,
                grid_y=gy,
                grid_prob=prob,
            )
        )
    return plot_selection(dataset.x_train, dataset.y_train, panels, stage)
