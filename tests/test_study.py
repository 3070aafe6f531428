"""Studies: variants against random, paired by seed, and when a variant may borrow random."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tavaal.config import ExperimentConfig
from tavaal.errors import ConfigError
from tavaal.report.study import (
    check_study,
    random_source,
    setting_changes,
    study_display,
    study_orders,
    study_table,
)

BASE = {
    "dataset": "digits",
    "model": "digits_cnn",
    "methods": ["random", "vaal"],
    "seeds": [0, 1, 2],
    "initial_size": 40,
    "budget": 40,
    "stages": 3,
}


def exp(name, methods=None, **changes):
    data = {**BASE, **changes}
    if methods is not None:
        data["methods"] = methods
    return ExperimentConfig.from_dict(name, data)


def summary(name, curves: dict[str, list[list[float]]], health=None) -> pd.DataFrame:
    """Rows (method, seed, stage) with labels 40, 80, 120 and the given accuracies per seed."""
    rows = []
    for method, per_seed in curves.items():
        for seed, accuracies in enumerate(per_seed):
            for stage, accuracy in enumerate(accuracies):
                row = {
                    "experiment": name,
                    "method": method,
                    "seed": seed,
                    "stage": stage,
                    "labels": 40 * (stage + 1),
                    "accuracy": accuracy,
                }
                if health and method in health and stage < 2:
                    row.update(health[method])
                rows.append(row)
    return pd.DataFrame(rows)


def test_setting_changes_name_what_differs():
    base = exp("d")
    assert setting_changes(base, base) == "(baseline)"
    beta = exp("d_beta", vae={"beta": 0.5})
    assert setting_changes(base, beta) == "vae.beta: 1.0 → 0.5"
    assert setting_changes(base, exp("d_m", methods=["vaal"])) == "(baseline)"


def test_a_variant_borrows_random_only_when_random_cannot_differ():
    base = exp("d")
    assert random_source(base, exp("v", methods=["vaal"], vae={"beta": 0.5})) == "d"
    assert random_source(base, exp("own", budget=20)) == "own"  # has its own random
    with pytest.raises(ConfigError, match=r"experiments\.v2: has no random .*budget: 40 → 20"):
        random_source(base, exp("v2", methods=["vaal"], budget=20))
    with pytest.raises(ConfigError, match="initial_size"):
        random_source(base, exp("v3", methods=["vaal"], initial_size=20))


def test_check_study_names_the_problem():
    defined = {"d": exp("d"), "v": exp("v", methods=["vaal"], vae={"beta": 0.5})}
    check_study("s", ["d", "v"], defined, "random")
    with pytest.raises(ConfigError, match=r"studies\.s\.experiments: 'x' is not among"):
        check_study("s", ["d", "x"], defined, "random")
    with pytest.raises(ConfigError, match="the first experiment, v, must run random"):
        check_study("s", ["v", "d"], defined, "random")


def test_study_table_pairs_by_seed_and_averages_the_health():
    base, variant = exp("d"), exp("v", methods=["vaal"], vae={"beta": 0.5})
    random = [[0.5, 0.6, 0.7], [0.4, 0.5, 0.6], [0.6, 0.7, 0.8]]
    # vaal in the baseline: random + 0.04 at stages 1 and 2 of every seed.
    vaal = [[a[0], a[1] + 0.04, a[2] + 0.04] for a in random]
    # vaal in the variant: seed-dependent gains 0, 0.1, 0.2 at the last stage.
    better = [[a[0], a[1], a[2] + 0.1 * s] for s, a in enumerate(random)]
    health = {"vaal": {"diag_vae_recon_mse": 0.5, "diag_mean_image_mse": 1.0, "diag_disc_auc": 0.7}}
    summaries = {
        "d": summary("d", {"random": random, "vaal": vaal}, health),
        "v": summary("v", {"vaal": better}, health),
    }
    table = study_table([base, variant], summaries)
    assert table["experiment"].tolist() == ["d", "v"]
    # AULC = trapezoid / label range: (40 * 0.04 / 2 + 40 * 0.08 / 2) / 80 = 0.03.
    assert table.loc[0, "aulc_diff_mean"] == pytest.approx(0.03)
    assert table.loc[0, "aulc_diff_ci_low"] == pytest.approx(0.03)  # no spread over seeds
    # Variant: last stage + 0.1 s -> AULC diff 0.1 s / 4: 0, 0.025, 0.05, mean 0.025.
    assert table.loc[1, "aulc_diff_mean"] == pytest.approx(0.025)
    low, high = table.loc[1, ["aulc_diff_ci_low", "aulc_diff_ci_high"]]
    assert low < 0.025 < high and high - 0.025 == pytest.approx(0.025 - low)
    assert table.loc[1, "changes"] == "vae.beta: 1.0 → 0.5"
    assert table.loc[0, "recon_ratio"] == pytest.approx(0.5)
    assert table.loc[0, "disc_auc"] == pytest.approx(0.7)
    assert math.isnan(table.loc[0, "rank_input_informative"])
    shown = study_display(table)
    assert shown.loc[0, "AULC − random (points)"] == "+3.0 [+3.0, +3.0]"
    assert shown.loc[0, "D AUC"] == "0.70" and shown.loc[0, "rank inputs in (0.01, 0.99)"] == "—"
    assert np.isfinite(table["aulc_diff_mean"]).all()
    # Random's own AULC, (0.55 + 0.65) / 2 = 0.6 for seed 0, 0.5 and 0.7 for the others.
    assert table["baseline_aulc"].tolist() == pytest.approx([0.6, 0.6])
    assert study_orders(table) == [
        "`d`: VAAL (+3.0) > Random; Random's own AULC 60.0",
        "`v`: VAAL (+2.5) > Random; Random's own AULC 60.0",
    ]


def test_study_orders_put_the_baseline_among_the_methods():
    table = pd.DataFrame(
        {
            "experiment": ["a", "a", "b", "b"],
            "method": ["coreset", "vaal", "coreset", "vaal"],
            "aulc_diff_mean": [0.02, -0.01, -0.005, 0.01],
            "baseline_aulc": [0.8, 0.8, 0.85, 0.85],
        }
    )
    assert study_orders(table) == [
        "`a`: Core-set (+2.0) > Random > VAAL (-1.0); Random's own AULC 80.0",
        "`b`: VAAL (+1.0) > Random > Core-set (-0.5); Random's own AULC 85.0",
    ]


def test_study_curves_one_panel_per_experiment_with_the_borrowed_random():
    """VAAL Fig. 5: a variant without random runs shows the first experiment's, of its seeds."""
    from tavaal.report.study import plot_study_curves

    base = exp("d")
    beta = exp("v", methods=["vaal"], seeds=[0, 1], vae={"beta": 0.5})
    wide = exp("w", methods=["vaal"], vae={"latent_dim": 8, "beta": 0.5, "epochs": 3})
    own = exp("own", budget=20)
    random = [[0.5, 0.6, 0.7], [0.4, 0.5, 0.6], [0.6, 0.7, 0.8]]
    vaal = [[a + 0.01 for a in seed] for seed in random]
    summaries = {
        name: summary(name, curves)
        for name, curves in {
            "d": {"random": random, "vaal": vaal},
            "v": {"vaal": vaal[:2]},
            "w": {"vaal": vaal},
            "own": {"random": random, "vaal": vaal},
        }.items()
    }
    fig = plot_study_curves([base, beta, wide, own], summaries, title="Study s")
    # Four panels; the grid's two cells left over (3 columns) are removed.
    assert len(fig.axes) == 4
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0] == "d\n(baseline)"
    assert titles[1] == "v\nvae.beta: 1.0 → 0.5"
    # Long lists of changes wrap between changes, never inside one.
    assert titles[2] == "w\nvae.beta: 1.0 → 0.5; vae.epochs: 100 → 3\nvae.latent_dim: 64 → 8"
    assert titles[3] == "own\nbudget: 40 → 20"

    def lines(ax):
        return {
            line.get_label(): line
            for line in ax.get_lines()
            if not line.get_label().startswith("_")
        }

    assert list(lines(fig.axes[0])) == ["Random", "VAAL"]
    assert list(lines(fig.axes[1])) == ["Random (d's runs)", "VAAL"]
    assert list(lines(fig.axes[2])) == ["Random (d's runs)", "VAAL"]
    assert list(lines(fig.axes[3])) == ["Random", "VAAL"]
    # v runs seeds 0 and 1: d's random of those seeds only, in percent.
    borrowed = lines(fig.axes[1])["Random (d's runs)"]
    np.testing.assert_allclose(borrowed.get_xdata(), [40, 80, 120])
    np.testing.assert_allclose(borrowed.get_ydata(), [45.0, 55.0, 65.0])
    np.testing.assert_allclose(lines(fig.axes[2])["Random (d's runs)"].get_ydata(), [50, 60, 70])
    assert fig.axes[0].get_xlabel() == "labeled samples"
    assert "test accuracy (%)" in fig.axes[0].get_ylabel()


def test_study_table_counts_the_wrong_labels_bought_with_a_noisy_oracle():
    base, noisy = exp("d"), exp("n", oracle={"noise": 0.2})
    random = [[0.5, 0.6, 0.7], [0.4, 0.5, 0.6], [0.6, 0.7, 0.8]]
    summaries = {"d": summary("d", {"random": random, "vaal": random})}
    summaries["n"] = summary("n", {"random": random, "vaal": random})
    for frame, wrong in ((summaries["d"], 0), (summaries["n"], 4)):
        # Seed s bought wrong * stage + s wrong labels by stage `stage`.
        frame["queried_wrong_labels"] = wrong * frame["stage"] + frame["seed"]
    assert "queried_wrong_labels" not in study_table([base], {"d": summaries["d"]})
    table = study_table([base, noisy], summaries)
    # Last stage (2): 0 + (0, 1, 2) and 8 + (0, 1, 2), mean over the 3 seeds.
    assert table["queried_wrong_labels"].tolist() == pytest.approx([1.0, 9.0])
    assert table.loc[1, "changes"] == "oracle.noise: 0.0 → 0.2"
    shown = study_display(table)
    assert shown["wrong labels bought"].tolist() == ["1.0", "9.0"]
    assert "AULC − random (points)" in shown
