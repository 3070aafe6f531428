"""Plain retraining (TA-VAAL §6.1) on hand-made metrics files with known numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tavaal.pool import ALL_METHODS
from tavaal.report.plain_retraining import (
    PLAIN_RECIPE,
    plain_retraining_display,
    plain_retraining_table,
    plot_plain_retraining,
    read_retraining,
)
from tavaal.training import PLAIN

LABELS = [20, 30, 40]
# accuracy[learner][method][seed][stage]; stage 0's plain classifier and random's are the same
# shared stage-0 plain model.
ACCURACY = {
    "own": {
        "lloss": [[0.50, 0.60, 0.70], [0.40, 0.56, 0.66]],
        "tavaal": [[0.50, 0.62, 0.71], [0.40, 0.57, 0.69]],
    },
    "plain": {
        "lloss": [[0.52, 0.65, 0.72], [0.44, 0.58, 0.70]],
        "tavaal": [[0.52, 0.61, 0.74], [0.44, 0.60, 0.69]],
    },
    "reference": {"random": [[0.52, 0.58, 0.65], [0.44, 0.54, 0.61]]},
}


def _metrics(path, method, seed, stage, accuracy, recipe, labels=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "experiment": "toy",
        "method": ALL_METHODS if stage == 0 else method,
        "recipe": recipe,
        "seed": seed,
        "stage": stage,
        "labels": LABELS[stage] if labels is None else labels,
        "accuracy": accuracy,
        "per_class_accuracy": [accuracy],
    }
    path.write_text(json.dumps(data))
    return path


def _files(tmp_path, learner, recipe, plain_labels=None):
    """(paths, methods) of one learner's metrics files, laid out as the workflow does."""
    paths, methods = [], []
    for method, per_seed in ACCURACY[learner].items():
        for seed, accuracies in enumerate(per_seed):
            for stage, accuracy in enumerate(accuracies):
                labels = plain_labels if stage == 2 else None
                path = tmp_path / learner / method / f"seed{seed}/stage{stage}/metrics.json"
                paths.append(_metrics(path, method, seed, stage, accuracy, recipe, labels))
                methods.append(method)
    return paths, methods


def _frames(tmp_path, plain_recipe=PLAIN_RECIPE, plain_labels=None):
    own, methods = _files(tmp_path, "own", "ranking_ranker")
    plain, _ = _files(tmp_path, "plain", plain_recipe, plain_labels)
    reference, _ = _files(tmp_path, "reference", PLAIN_RECIPE)
    return read_retraining(own, plain, methods, reference, "random")


def test_the_plain_recipe_is_spelled_as_the_trainings():
    assert PLAIN_RECIPE == PLAIN.name


def test_plain_retraining_table_pairs_own_and_plain_by_seed(tmp_path):
    table = plain_retraining_table(*_frames(tmp_path))
    assert table["method"].tolist() == ["lloss"] * 3 + ["tavaal"] * 3
    assert table["labels"].tolist() == LABELS * 2
    assert (table["seeds"] == 2).all()
    row = table[(table["method"] == "lloss") & (table["stage"] == 1)].iloc[0]
    assert row["own_mean"] == pytest.approx(0.58)
    assert row["own_std"] == pytest.approx(np.std([0.60, 0.56], ddof=1))
    assert row["plain_mean"] == pytest.approx(0.615)
    # Paired by seed: 0.65 - 0.60 and 0.58 - 0.56.
    assert row["plain_minus_own_mean"] == pytest.approx(0.035)
    assert row["plain_minus_own_std"] == pytest.approx(np.std([0.05, 0.02], ddof=1))
    assert row["reference"] == "random"
    assert row["reference_mean"] == pytest.approx(0.56)
    # Stage 0: the plain classifier is the shared stage-0 plain model, random's too.
    first = table[table["stage"] == 0]
    np.testing.assert_allclose(first["plain_mean"], first["reference_mean"])
    tavaal = table[(table["method"] == "tavaal") & (table["stage"] == 2)].iloc[0]
    assert tavaal["plain_minus_own_mean"] == pytest.approx(0.015)
    shown = plain_retraining_display(table)
    assert list(shown.columns) == [
        "method",
        "labels",
        "own learner (%)",
        "plain classifier (%)",
        "plain − own (points)",
        "Random (%)",
    ]
    assert shown.loc[1].tolist() == [
        "Learning loss",
        30,
        "58.0 ± 2.8",
        "61.5 ± 4.9",
        "+3.5 ± 2.1",
        "56.0 ± 2.8",
    ]


def test_plain_retraining_without_a_reference(tmp_path):
    own, plain, _ = _frames(tmp_path)
    table = plain_retraining_table(own, plain)
    assert table["reference_mean"].isna().all()
    assert "Random (%)" not in plain_retraining_display(table)
    assert table["plain_minus_own_mean"].notna().all()


def test_plain_retraining_refuses_other_recipes_and_other_labeled_sets(tmp_path):
    with pytest.raises(ValueError, match="trained with recipe 'ranking_ranker'"):
        _frames(tmp_path / "a", plain_recipe="ranking_ranker")
    own, plain, _ = _frames(tmp_path / "b", plain_labels=41)
    with pytest.raises(ValueError, match="learned 41 labels, the method's own 40"):
        plain_retraining_table(own, plain)


def test_plain_retraining_figure_has_one_panel_per_method(tmp_path):
    table = plain_retraining_table(*_frames(tmp_path))
    fig = plot_plain_retraining(table, "toy")
    assert [ax.get_title() for ax in fig.axes] == ["Learning loss", "TA-VAAL"]
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines) == [
        "Learning loss, own task learner",
        "plain classifier, same labeled sets",
        "Random",
    ]
    np.testing.assert_allclose(
        lines["plain classifier, same labeled sets"].get_ydata(), [48, 61.5, 71]
    )
    np.testing.assert_allclose(lines["Random"].get_xdata(), LABELS)
    assert ax.get_xlabel() == "labeled samples"
    assert "test accuracy (%)" in ax.get_ylabel()
