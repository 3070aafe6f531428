"""The report of a segmentation experiment (issue 11): its summary reads mIoU and counts the
classes of a labeled set over its masks' pixels; its curves, tables, README text, studies and
plain retraining use mIoU and say so."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from tavaal import report
from tavaal.config import ExperimentConfig
from tavaal.data import IGNORE_INDEX, class_count_entropy, load_dataset
from tavaal.errors import ConfigError
from tavaal.pool import ALL_METHODS, make_table, write_labeled
from tavaal.report.readme import experiment_section, study_section
from tavaal.report.study import check_study, plot_study, study_table
from tavaal.tasks import task_of

LABELS = (12, 18, 24)
# miou[method][seed][stage]
MIOU = {
    "random": [[0.30, 0.40, 0.45], [0.28, 0.36, 0.44]],
    "entropy": [[0.30, 0.46, 0.52], [0.28, 0.41, 0.50]],
}


def seg_summary(values=MIOU) -> pd.DataFrame:
    rows = [
        {
            "experiment": "seg",
            "method": method,
            "seed": seed,
            "stage": stage,
            "labels": LABELS[stage],
            "metric": "miou",
            "miou": miou,
            "selected_class_entropy": 0.5 + 0.1 * stage,
            "labeled_class_entropy": 0.6 + 0.1 * stage,
            "num_classes": 4,
        }
        for method, per_seed in values.items()
        for seed, per_stage in enumerate(per_seed)
        for stage, miou in enumerate(per_stage)
    ]
    return pd.DataFrame(rows)


@pytest.fixture(autouse=True)
def close_figures():
    """Figures drawn by a test are closed after it (pyplot keeps them otherwise)."""
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("data")
    return data_dir, load_dataset("seg_shapes", data_dir)


def _pixel_entropy(masks: np.ndarray) -> float:
    pixels = masks.ravel()
    return class_count_entropy(np.bincount(pixels[pixels != IGNORE_INDEX], minlength=4))


def test_a_segmentation_summary_reads_miou_and_counts_classes_over_mask_pixels(shapes, tmp_path):
    data_dir, dataset = shapes
    task = task_of(dataset.info)
    pixel_counts = task.label_table(dataset.y_train)
    stages = {0: np.array([3, 40, 7, 100]), 1: np.array([250, 12])}
    metrics, labeled = [], []
    for method in ("random", "entropy"):
        indices = np.concatenate(list(stages.values()))
        added = np.concatenate([np.full(len(v), s) for s, v in stages.items()])
        labels = pixel_counts[indices].copy()
        if method == "entropy":  # an index file whose label column disagrees with the masks
            labels[-1] += 1
        path = tmp_path / method / "stage1" / "labeled.parquet"
        meta = {"experiment": "seg", "method": method, "seed": 0, "stage": 1}
        write_labeled(path, make_table(indices, labels, added), {**meta, "settings_hash": "x"})
        labeled.append(path)
        for stage in (0, 1):
            file = tmp_path / method / f"stage{stage}" / "metrics.json"
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(
                json.dumps(
                    {
                        **meta,
                        "method": ALL_METHODS if stage == 0 else method,
                        "stage": stage,
                        "labels": 4 + 2 * stage,
                        "metric": "miou",
                        "miou": 0.3 + 0.1 * stage,
                        "per_class_iou": [0.5, None, 0.2 + stage / 10, 0.4],
                        "pixel_accuracy": 0.8,
                        "test_loss": 0.7,
                        "test_pixels": 1000,
                        "confusion": [[1, 0], [0, 1]],
                    }
                )
            )
            metrics.append(file)
    summary = report.aggregate_experiment(
        metrics, labeled, [], data_dir / "seg_shapes", ["random", "random", "entropy", "entropy"]
    )
    assert report.score_of(summary) is report.MIOU
    assert {"miou", "min_class_iou", "pixel_accuracy"} <= set(summary)
    assert "accuracy" not in summary and "min_class_accuracy" not in summary
    assert "confusion" not in summary and "per_class_iou" not in summary
    row = summary[summary["method"] == "random"].set_index("stage")
    assert row["miou"].tolist() == pytest.approx([0.3, 0.4])
    assert row["min_class_iou"].tolist() == pytest.approx([0.2, 0.3])
    masks = np.asarray(dataset.y_train)
    # Each stage's batch and the labeled set, counted over the masks' labeled pixels by hand.
    assert row.loc[0, "selected_class_entropy"] == pytest.approx(_pixel_entropy(masks[stages[0]]))
    assert row.loc[1, "selected_class_entropy"] == pytest.approx(_pixel_entropy(masks[stages[1]]))
    both = masks[np.concatenate(list(stages.values()))]
    assert row.loc[1, "labeled_class_entropy"] == pytest.approx(_pixel_entropy(both))
    assert row.loc[1, "labeled_class_entropy"] != pytest.approx(row.loc[0, "labeled_class_entropy"])
    assert row["selected"].tolist() == [4, 2]
    assert row["wrong_labels"].tolist() == [0, 0]
    # A label column that is not the masks' pixel count is counted as a wrong answer.
    other = summary[summary["method"] == "entropy"].set_index("stage")
    assert other["wrong_labels"].tolist() == [0, 1]
    assert other["queried_wrong_labels"].tolist() == [0, 1]


def test_the_tables_of_a_segmentation_experiment_are_in_miou():
    summary = seg_summary()
    table = report.accuracy_table(summary)
    assert {"miou_mean", "miou_std", "diff_mean"} <= set(table)
    assert "accuracy_mean" not in table
    last = table[(table["method"] == "entropy") & (table["stage"] == 2)].iloc[0]
    assert last["miou_mean"] == pytest.approx(0.51)
    assert last["diff_mean"] == pytest.approx(0.065)
    shown = report.accuracy_display(table).set_index("labels")
    assert shown.loc[24, "Entropy"] == "51.0 ± 1.4 (+6.5)"
    reach = report.labels_to_reach(summary, [0.4, 0.5])
    assert list(reach.columns) == ["target_miou", "method", "labels", "saved_vs_baseline"]
    got = {(r.target_miou, r.method): r.labels for r in reach.itertuples()}
    assert got[(0.4, "random")] == 24 and got[(0.4, "entropy")] == 18
    assert math.isnan(got[(0.5, "random")]) and got[(0.5, "entropy")] == 24
    assert report.default_targets(summary) == [0.38, 0.445]
    aulc = report.aulc_table(summary).set_index("method")
    # Random's seed 0: trapezoids (0.35 x 6 + 0.425 x 6) / 12.
    assert aulc.loc["random", "aulc_mean"] == pytest.approx((0.3875 + 0.36) / 2)


def test_the_figures_and_readme_of_a_segmentation_experiment_say_miou():
    summary = seg_summary()
    fig = report.plot_accuracy(summary)
    ax = fig.axes[0]
    assert ax.get_ylabel() == "test mIoU (%)"
    assert "mIoU" in ax.get_title()
    line = next(line for line in ax.get_lines() if line.get_label() == "Entropy")
    assert line.get_ydata().tolist() == pytest.approx([29.0, 43.5, 51.0])
    assert report.plot_improvement(summary).axes[0].get_ylabel().startswith("mIoU − Random")
    entropy = report.plot_class_entropy(summary)
    assert entropy.axes[0].get_ylabel() == "class-pixel entropy (nats)"
    text = experiment_section(summary)
    assert "Test mIoU (%), mean ± std over seeds" in text
    assert "the highest mean mIoU is Entropy's (51.0%)" in text
    assert "mean mIoU over the labels spent" in text
    assert "Class-pixel entropy (nats)" in text
    assert "accuracy" not in text.lower()


def test_accuracies_and_mious_are_not_mixed():
    classification = seg_summary().drop(columns="metric").rename(columns={"miou": "accuracy"})
    assert report.score_of(classification) is report.ACCURACY
    mixed = pd.concat([seg_summary(), classification.assign(metric=None)])
    with pytest.raises(ValueError, match=r"the summary mixes scores \(accuracy, mIoU\)"):
        report.score_of(mixed)
    with pytest.raises(ValueError, match="unknown score 'dice'"):
        report.score_of(seg_summary().assign(metric="dice"))


def _experiment(name: str, dataset: str, model: str, **settings) -> ExperimentConfig:
    base = {"dataset": dataset, "model": model, "methods": ["random", "entropy"], "seeds": [0, 1]}
    return ExperimentConfig.from_dict(name, {**base, **settings})


def test_a_segmentation_study_compares_mious_and_refuses_a_classification_variant():
    seg = _experiment("seg", "seg_shapes", "drn_d_22", initial_size=12, budget=6, stages=3)
    wide = _experiment("wide", "seg_shapes", "drn_d_22", initial_size=12, budget=6, stages=3)
    wide = ExperimentConfig.from_dict("wide", {**wide.to_dict(), "vae": {"latent_dim": 16}})
    digits = _experiment("digits", "digits", "mlp", initial_size=12, budget=6, stages=3)
    defined = {exp.name: exp for exp in (seg, wide, digits)}
    check_study("s", ["seg", "wide"], defined, "random")
    with pytest.raises(ConfigError, match=r"studies\.s\.experiments: digits is a classification"):
        check_study("s", ["seg", "digits"], defined, "random")
    better = {**MIOU, "entropy": [[0.30, 0.50, 0.60], [0.28, 0.45, 0.55]]}
    summaries = {"seg": seg_summary(), "wide": seg_summary(better).assign(experiment="wide")}
    table = study_table([seg, wide], summaries)
    assert set(table["score"]) == {"miou"}
    assert "mIoU points" in plot_study(table, "t").axes[0].get_xlabel()
    assert "in mIoU points, paired by seed" in study_section(table, "s")


def test_plain_retraining_of_a_segmentation_experiment_compares_mious(tmp_path):
    def files(learner, recipe, values):
        paths, methods = [], []
        for seed, per_stage in enumerate(values):
            for stage, miou in enumerate(per_stage):
                path = tmp_path / learner / f"seed{seed}/stage{stage}/metrics.json"
                path.parent.mkdir(parents=True, exist_ok=True)
                data = {
                    "experiment": "seg",
                    "method": ALL_METHODS if stage == 0 else "lloss",
                    "recipe": recipe,
                    "seed": seed,
                    "stage": stage,
                    "labels": LABELS[stage],
                    "metric": "miou",
                    "miou": miou,
                    "per_class_iou": [miou, None],
                }
                path.write_text(json.dumps(data))
                paths.append(path)
                methods.append("lloss")
        return paths, methods

    own, methods = files("own", "margin_ranker", [[0.3, 0.4, 0.5], [0.2, 0.3, 0.4]])
    plain, _ = files("plain", "plain", [[0.3, 0.45, 0.5], [0.2, 0.35, 0.5]])
    frames = report.read_retraining(own, plain, methods)
    table = report.plain_retraining_table(*frames).set_index("stage")
    assert set(table["score"]) == {"miou"}
    assert table.loc[2, "own_mean"] == pytest.approx(0.45)
    assert table.loc[2, "plain_minus_own_mean"] == pytest.approx(0.05)
    figure = report.plot_plain_retraining(table.reset_index(), "t")
    assert figure.axes[0].get_ylabel() == "test mIoU (%), mean ± std over seeds"
