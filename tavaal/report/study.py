"""Studies: one setting changed at a time, and what it does to a method against random.

A study is a list of experiments (`studies.<name>.experiments` in the config): a baseline
experiment and variants that differ from it in a few settings. Per variant and method, the
table gives the area under the learning curve minus random's, paired by seed, with a t interval,
and the health of the adversarial part (VAE reconstruction against the mean image, D's AUC, and
for TA-VAAL how much rank signal D got).

A variant needs no random runs of its own when random's results cannot differ from the baseline
experiment's: same pool, same training recipe settings, same query settings of random (e.g. a
variant that changes only `vae.*`). `random_source` decides that from the settings, and the
workflow refuses a study where it does not hold (`check_study`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from tavaal.config import ExperimentConfig
from tavaal.data import known_task
from tavaal.errors import ConfigError
from tavaal.report.score import score_named, score_of
from tavaal.report.statistics import aulc_per_seed, learning_curves, t_interval
from tavaal.report.style import method_label, method_order
from tavaal.strategies import method_hash, strategy_class
from tavaal.training import training_hash

# Adversarial diagnostics averaged over a variant's queries and seeds (summary columns diag_*).
HEALTH = ("disc_auc", "rank_input_informative", "rank_input_std")


def setting_changes(base: ExperimentConfig, variant: ExperimentConfig) -> str:
    """What a variant changes, as "key: old → new" for every differing setting (not the lists
    of methods and seeds, nor the name)."""
    ignored = {"name", "methods", "seeds"}
    old, new = _flat(base.to_dict()), _flat(variant.to_dict())
    changes = [
        f"{key}: {_show(old.get(key))} → {_show(new.get(key))}"
        for key in sorted(old.keys() | new.keys())
        if key.split(".")[0] not in ignored and old.get(key) != new.get(key)
    ]
    return "; ".join(changes) if changes else "(baseline)"


def random_source(
    base: ExperimentConfig, variant: ExperimentConfig, baseline: str = "random"
) -> str:
    """The experiment whose `baseline` runs a variant is compared with: its own when it has
    them, else the baseline experiment's when they would be identical; ConfigError otherwise."""
    if baseline in variant.methods:
        return variant.name
    recipe = strategy_class(baseline).recipe
    same = (
        base.pool_settings() == variant.pool_settings()
        and training_hash(base, recipe) == training_hash(variant, recipe)
        and method_hash(base, baseline) == method_hash(variant, baseline)
        and base.stages == variant.stages
        and set(variant.seeds) <= set(base.seeds)
        and baseline in base.methods
    )
    if not same:
        raise ConfigError(
            f"experiments.{variant.name}: has no {baseline} runs and changes settings that "
            f"{baseline}'s results depend on ({setting_changes(base, variant)}); add "
            f"{baseline} to its methods"
        )
    return base.name


def check_study(
    name: str, experiments: Sequence[str], defined: Mapping[str, ExperimentConfig], baseline: str
) -> None:
    """Errors a study's config can have, named before any job runs."""
    where = f"studies.{name}.experiments"
    if not experiments:
        raise ConfigError(f"{where}: a study needs at least one experiment")
    missing = [e for e in experiments if e not in defined]
    if missing:
        raise ConfigError(
            f"{where}: {missing[0]!r} is not among the experiments this run builds "
            f"({', '.join(defined)}); add it to run_experiments"
        )
    base = defined[experiments[0]]
    if baseline not in base.methods:
        raise ConfigError(f"{where}: the first experiment, {base.name}, must run {baseline}")
    for other in experiments[1:]:
        # Accuracies and mIoUs share no axis: a study compares variants of one task.
        if known_task(defined[other].dataset) != known_task(base.dataset):
            raise ConfigError(
                f"{where}: {other} is a {known_task(defined[other].dataset)} experiment and "
                f"{base.name} a {known_task(base.dataset)} one; a study's experiments share "
                "one task, whose score they compare"
            )
        random_source(base, defined[other], baseline)


def study_table(
    experiments: Sequence[ExperimentConfig],
    summaries: Mapping[str, pd.DataFrame],
    baseline: str = "random",
    confidence: float = 0.95,
) -> pd.DataFrame:
    """One row per (experiment, method other than the baseline): AULC minus the baseline's,
    paired by seed, with its t interval, and the mean adversarial health; `score`: the
    score whose curves the AULC is of (accuracy, or miou); `baseline_aulc`: the baseline's own
    AULC the row is paired with, mean over seeds (a training recipe moves it). When an
    experiment of the study has a noisy oracle, also queried_wrong_labels: the wrong labels its
    queries bought by the last stage, mean over seeds."""
    base = experiments[0]
    score = score_of(pd.concat([summaries[exp.name] for exp in experiments]))
    # A noisy oracle (VAAL §5.2) in the study: how many wrong labels each method bought.
    noisy = any(exp.oracle.noise > 0 for exp in experiments)
    rows = []
    for exp in experiments:
        summary = summaries[exp.name]
        reference = summaries[random_source(base, exp, baseline)]
        base_aulc = aulc_per_seed(reference[reference["method"] == baseline])
        base_aulc = base_aulc.set_index("seed")["aulc"]
        own = aulc_per_seed(summary[summary["method"] != baseline])
        for method in method_order(own["method"]):
            per_seed = own[own["method"] == method].set_index("seed")["aulc"]
            paired = (per_seed - base_aulc).dropna()
            low, high = t_interval(paired.to_numpy(), confidence)
            queries = summary[(summary["method"] == method) & summary["stage"].lt(exp.stages - 1)]
            row = {
                "experiment": exp.name,
                "changes": setting_changes(base, exp),
                "method": method,
                "seeds": len(paired),
                "aulc_diff_mean": float(paired.mean()) if len(paired) else math.nan,
                "aulc_diff_ci_low": low,
                "aulc_diff_ci_high": high,
                "baseline_aulc": float(base_aulc.mean()),
                "recon_ratio": _mean_ratio(queries),
                "score": score.column,
            }
            for key in HEALTH:
                column = f"diag_{key}"
                row[key] = float(queries[column].mean()) if column in queries else math.nan
            if noisy:
                row["queried_wrong_labels"] = _bought_wrong(summary, method, exp.stages - 1)
            rows.append(row)
    return pd.DataFrame(rows)


def study_display(table: pd.DataFrame) -> pd.DataFrame:
    """For reading: AULC differences in points of the score with their interval, health
    rounded, and with a noisy oracle the wrong labels bought by the last stage (mean over
    seeds)."""
    shown = pd.DataFrame(
        {
            "experiment": table["experiment"],
            "changes": table["changes"],
            "method": [method_label(m) for m in table["method"]],
            "AULC − random (points)": [
                _interval(r.aulc_diff_mean, r.aulc_diff_ci_low, r.aulc_diff_ci_high)
                for r in table.itertuples(index=False)
            ],
            "recon / mean image": table["recon_ratio"].map(_two),
            "D AUC": table["disc_auc"].map(_two),
            "rank inputs in (0.01, 0.99)": table["rank_input_informative"].map(_two),
        }
    )
    if "queried_wrong_labels" in table:
        shown["wrong labels bought"] = table["queried_wrong_labels"].map(_one)
    return shown


def plot_study(table: pd.DataFrame, title: str, confidence: float = 0.95):
    """AULC minus random per variant (rows) and method (markers) with the paired intervals."""
    import matplotlib.pyplot as plt

    from tavaal.report.style import method_color

    experiments = list(dict.fromkeys(table["experiment"]))
    methods = method_order(table["method"])
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(experiments) * max(1, len(methods)) + 1.5))
    offsets = np.linspace(-0.25, 0.25, len(methods)) if len(methods) > 1 else [0.0]
    for offset, method in zip(offsets, methods, strict=True):
        rows = table[table["method"] == method]
        y = [experiments.index(e) + offset for e in rows["experiment"]]
        mean = 100 * rows["aulc_diff_mean"].to_numpy()
        low = 100 * rows["aulc_diff_ci_low"].to_numpy()
        high = 100 * rows["aulc_diff_ci_high"].to_numpy()
        ax.errorbar(
            mean,
            y,
            xerr=[mean - low, high - mean],
            fmt="o",
            color=method_color(method),
            label=method_label(method),
            capsize=3,
        )
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(experiments)), experiments)
    ax.invert_yaxis()
    ax.set_xlabel(
        f"area under the learning curve − random's, {study_score(table).points} "
        f"(paired by seed, {round(100 * confidence)}% t interval)"
    )
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_study_curves(
    experiments: Sequence[ExperimentConfig],
    summaries: Mapping[str, pd.DataFrame],
    baseline: str = "random",
    title: str | None = None,
):
    """Learning curves of every experiment of a study, one panel each (VAAL Fig. 5): the test
    score (accuracy, or mIoU) against labeled samples per method, mean ± std over seeds
    (shaded), with the baseline's curve from `random_source` (a variant may borrow the first
    experiment's runs, of its own seeds). Panels share the score axis, so that variants compare
    at a glance."""
    import matplotlib.pyplot as plt

    from tavaal.report.figures.common import draw_curve, label_count_axis

    base = experiments[0]
    score = score_of(pd.concat([summaries[exp.name] for exp in experiments]))
    columns = min(len(experiments), 3)
    rows = math.ceil(len(experiments) / columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(5 * columns, 4.2 * rows), sharey=True, squeeze=False
    )
    for ax, exp in zip(axes.flat, experiments, strict=False):
        source = random_source(base, exp, baseline)
        reference = summaries[source]
        reference = reference[(reference["method"] == baseline) & reference["seed"].isin(exp.seeds)]
        own = summaries[exp.name]
        curves = learning_curves(pd.concat([reference, own[own["method"] != baseline]]))
        curves = curves.assign(mean=100 * curves["mean"], std=100 * curves["std"])
        for method in method_order(curves["method"]):
            borrowed = method == baseline and source != exp.name
            label = f"{method_label(method)} ({source}'s runs)" if borrowed else None
            draw_curve(ax, curves, method, label=label)
        label_count_axis(ax, curves["labels"])
        ax.set_title(f"{exp.name}\n{_wrapped(setting_changes(base, exp))}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"{score.axis_label}, mean ± std over seeds")
    # The grid's cells left over after the last experiment.
    for ax in axes.flat[len(experiments) :]:
        fig.delaxes(ax)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def study_orders(table: pd.DataFrame, baseline: str = "random") -> list[str]:
    """Per experiment of a study table, its methods by mean AULC − baseline, best first, with
    the baseline at its place (0) and its own AULC: how a changed setting reorders them."""
    lines = []
    for experiment, rows in table.groupby("experiment", sort=False):
        ranked = sorted(
            [(r.aulc_diff_mean, method_label(r.method)) for r in rows.itertuples(index=False)]
            + [(0.0, method_label(baseline))],
            key=lambda item: -item[0],
        )
        order = " > ".join(
            f"{label} ({100 * diff:+.1f})" if label != method_label(baseline) else label
            for diff, label in ranked
        )
        own = rows["baseline_aulc"].iloc[0] if "baseline_aulc" in rows else math.nan
        lines.append(
            f"`{experiment}`: {order}"
            + ("" if math.isnan(own) else f"; {method_label(baseline)}'s own AULC {100 * own:.1f}")
        )
    return lines


def study_score(table: pd.DataFrame):
    """The score a study table's AULCs are of (a table without the column: accuracy)."""
    return score_named(table["score"].iloc[0] if "score" in table and len(table) else None)


def _wrapped(changes: str, width: int = 60) -> str:
    """setting_changes over lines of about `width` characters, never inside one change."""
    lines: list[str] = []
    for change in changes.split("; "):
        if lines and len(lines[-1]) + 2 + len(change) <= width:
            lines[-1] += f"; {change}"
        else:
            lines.append(change)
    return "\n".join(lines)


def _bought_wrong(summary: pd.DataFrame, method: str, stage: int) -> float:
    rows = summary[(summary["method"] == method) & (summary["stage"] == stage)]
    if "queried_wrong_labels" not in rows or rows.empty:
        return math.nan
    return float(rows["queried_wrong_labels"].mean())


def _mean_ratio(queries: pd.DataFrame) -> float:
    if "diag_vae_recon_mse" not in queries or "diag_mean_image_mse" not in queries:
        return math.nan
    return float((queries["diag_vae_recon_mse"] / queries["diag_mean_image_mse"]).mean())


def _interval(mean: float, low: float, high: float) -> str:
    if math.isnan(mean):
        return "—"
    if math.isnan(low):
        return f"{100 * mean:+.1f}"
    return f"{100 * mean:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"


def _two(value: float) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.2f}"


def _one(value: float) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.1f}"


def _flat(data: Mapping, prefix: str = "") -> dict:
    flat = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flat(value, f"{path}."))
        else:
            flat[path] = value
    return flat


def _show(value) -> str:
    return "—" if value is None else str(value)
