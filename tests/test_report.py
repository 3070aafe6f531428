"""tavaal.report on hand-made summaries and files with known numbers."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import matplotlib
import numpy as np
import pandas as pd
import pytest

from tavaal import report
from tavaal.pool import make_table, write_labeled, write_scores


def make_summary(values: dict[str, list[list[float]]], labels=(10, 20, 30)) -> pd.DataFrame:
    """values[method][seed][stage] = accuracy."""
    rows = []
    for method, per_seed in values.items():
        for seed, accuracies in enumerate(per_seed):
            for stage, accuracy in enumerate(accuracies):
                rows.append(
                    {
                        "experiment": "toy",
                        "method": method,
                        "seed": seed,
                        "stage": stage,
                        "labels": labels[stage],
                        "accuracy": accuracy,
                    }
                )
    return pd.DataFrame(rows)


TOY = make_summary(
    {
        "random": [[0.50, 0.60, 0.70], [0.40, 0.50, 0.60]],
        "tavaal": [[0.50, 0.70, 0.90], [0.40, 0.70, 0.80]],
        "vaal": [[0.50, 0.55, 0.75], [0.40, 0.50, 0.55]],
    }
)


def test_method_order_follows_the_papers():
    assert report.method_order(["tavaal", "random", "zzz", "coreset", "vaal"]) == [
        "random",
        "coreset",
        "vaal",
        "tavaal",
        "zzz",
    ]


def test_method_colors_are_the_same_in_every_process():
    # Each figure is drawn by its own job: an unregistered method must keep its colour.
    code = "from tavaal.report.style import method_color; print(method_color('my_method'))"
    colors = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert len(colors) == 1
    assert report.method_color("vaal") != report.method_color("tavaal")


def test_known_methods_have_distinct_colours_and_the_papers_keep_theirs():
    from tavaal.report.style import METHOD_LABELS

    colours = [report.method_color(m) for m in METHOD_LABELS]
    assert len(set(colours)) == len(colours)
    # The papers' methods kept their colours when the newer baselines came: TA-VAAL is the
    # 14th known method, Dark2's fourth colour.
    assert report.method_color("random") == matplotlib.colormaps["tab10"].colors[0]
    assert report.method_color("tavaal") == matplotlib.colormaps["Dark2"].colors[3]


def test_learning_curves_mean_and_std_over_seeds():
    curves = report.learning_curves(TOY)
    row = curves[(curves["method"] == "tavaal") & (curves["stage"] == 2)].iloc[0]
    assert row["labels"] == 30
    assert row["mean"] == pytest.approx(0.85)
    assert row["std"] == pytest.approx(np.std([0.9, 0.8], ddof=1))
    assert row["n"] == 2
    assert list(curves["method"].unique()) == ["random", "vaal", "tavaal"]


def test_paired_differences_pair_by_seed():
    pairs = report.paired_differences(TOY, "random")
    tavaal = pairs[pairs["method"] == "tavaal"].set_index(["seed", "stage"])["difference"]
    assert tavaal[(0, 1)] == pytest.approx(0.10)
    assert tavaal[(1, 1)] == pytest.approx(0.20)
    assert tavaal[(1, 2)] == pytest.approx(0.20)
    assert (pairs[pairs["method"] == "random"]["difference"] == 0).all()


def test_improvement_curves_average_the_paired_differences():
    curves = report.improvement_curves(TOY, "random")
    row = curves[(curves["method"] == "tavaal") & (curves["stage"] == 1)].iloc[0]
    assert row["mean"] == pytest.approx(0.15)
    assert row["std"] == pytest.approx(np.std([0.1, 0.2], ddof=1))
    vaal = curves[(curves["method"] == "vaal") & (curves["stage"] == 2)].iloc[0]
    assert vaal["mean"] == pytest.approx(0.0)
    assert vaal["std"] == pytest.approx(np.std([0.05, -0.05], ddof=1))


def test_paired_differences_need_the_baseline():
    with pytest.raises(ValueError, match="baseline"):
        report.paired_differences(TOY[TOY["method"] != "random"], "random")


def test_area_under_curve_is_the_mean_accuracy_over_the_labels():
    # Trapezoids: (10 * (0.5 + 0.7) / 2 + 10 * (0.7 + 0.9) / 2) / 20 = 0.7
    assert report.area_under_curve([0, 10, 20], [0.5, 0.7, 0.9]) == pytest.approx(0.7)
    # Unequal spacing and unsorted input: (10 * 0.6 + 30 * 0.8) / 40 = 0.75
    assert report.area_under_curve([40, 0, 10], [0.9, 0.5, 0.7]) == pytest.approx(0.75)
    assert report.area_under_curve([5], [0.3]) == pytest.approx(0.3)


def test_aulc_table_paired_confidence_interval():
    summary = make_summary(
        {
            "random": [[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]],
            "tavaal": [[0.6, 0.6], [0.7, 0.7], [0.8, 0.8]],
        },
        labels=(10, 20),
    )
    table = report.aulc_table(summary, "random", confidence=0.95).set_index("method")
    row = table.loc["tavaal"]
    assert row["aulc_mean"] == pytest.approx(0.7)
    assert row["diff_mean"] == pytest.approx(0.2)
    # t(0.975, 2) = 4.302653; sd of (0.1, 0.2, 0.3) = 0.1.
    half = 4.302653 * 0.1 / math.sqrt(3)
    assert row["diff_ci_low"] == pytest.approx(0.2 - half, abs=1e-6)
    assert row["diff_ci_high"] == pytest.approx(0.2 + half, abs=1e-6)
    assert row["pairs"] == 3
    assert table.loc["random", "diff_mean"] == 0.0


def test_aulc_table_without_baseline_leaves_differences_empty():
    table = report.aulc_table(TOY[TOY["method"] != "random"], "random")
    assert table["diff_mean"].isna().all()
    assert (table["pairs"] == 0).all()


def test_t_interval_needs_two_values():
    assert all(math.isnan(v) for v in report.t_interval([0.3]))


def test_labels_to_reach_uses_the_first_stage_at_or_above_the_target():
    table = report.labels_to_reach(TOY, [0.55, 0.7, 0.95], "random")
    got = {(r.target_accuracy, r.method): r.labels for r in table.itertuples()}
    # Means: random 0.45 0.55 0.65; tavaal 0.45 0.70 0.85; vaal 0.45 0.525 0.65.
    assert got[(0.55, "random")] == 20
    assert got[(0.55, "tavaal")] == 20
    assert got[(0.55, "vaal")] == 30
    assert got[(0.7, "tavaal")] == 20
    assert math.isnan(got[(0.7, "random")])
    assert math.isnan(got[(0.95, "tavaal")])
    saved = table[(table["target_accuracy"] == 0.55) & (table["method"] == "vaal")]
    assert saved["saved_vs_baseline"].iloc[0] == -10


def test_default_targets_are_the_baselines_mean_accuracies_floored():
    summary = make_summary({"random": [[0.5, 0.61237, 0.7]], "x": [[0.5, 0.6, 0.8]]})
    assert report.default_targets(summary, "random") == [0.6123, 0.7]
    flat = make_summary({"random": [[0.5, 0.7, 0.7]], "x": [[0.5, 0.6, 0.8]]})
    assert report.default_targets(flat, "random") == [0.7]
    reach = report.labels_to_reach(summary, report.default_targets(summary), "random")
    random_rows = reach[reach["method"] == "random"]
    assert list(random_rows["labels"]) == [20, 30]


def test_accuracy_table_and_its_display():
    table = report.accuracy_table(TOY, "random")
    row = table[(table["method"] == "tavaal") & (table["stage"] == 2)].iloc[0]
    assert row["accuracy_mean"] == pytest.approx(0.85)
    assert row["diff_mean"] == pytest.approx(0.2)
    text = report.markdown_table(report.accuracy_display(table))
    lines = text.strip().splitlines()
    assert lines[0] == "| labels | Random | VAAL | TA-VAAL |"
    assert lines[-1].startswith("| 30 | 65.0 ± 7.1 | 65.0 ± 14.1 (+0.0) | 85.0 ± 7.1 (+20.0) |")


def test_markdown_table_shows_missing_values_as_dashes():
    frame = pd.DataFrame({"method": ["a", "b"], "value": [0.123456, math.nan]})
    assert report.markdown_table(frame) == (
        "| method | value |\n|---|---|\n| a | 0.1235 |\n| b | — |\n"
    )


def test_table_files_hold_the_same_cells(tmp_path):
    frame = pd.DataFrame({"method": ["a<b", "c"], "value": [0.123456, math.nan], "n": [3, 4]})
    paths = [tmp_path / f"t.{ext}" for ext in ("csv", "md", "html")]
    report.write_table(frame, *paths, title="Some & title")
    assert paths[0].read_text() == "method,value,n\na<b,0.123456,3\nc,,4\n"
    assert paths[1].read_text() == (
        "## Some & title\n\n| method | value | n |\n|---|---|---|\n"
        "| a<b | 0.1235 | 3 |\n| c | — | 4 |\n"
    )
    page = paths[2].read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "<h2>Some &amp; title</h2>" in page
    assert "<th>method</th><th>value</th><th>n</th>" in page
    assert "<tr><td>a&lt;b</td><td>0.1235</td><td>3</td></tr>" in page
    assert "<tr><td>c</td><td>—</td><td>4</td></tr>" in page
    # Self-contained: the report shows it in an iframe from a data: URI.
    assert "<link" not in page and "src=" not in page


def test_write_table_shows_the_display_frame_and_keeps_the_csv_raw(tmp_path):
    table = report.accuracy_table(TOY, "random")
    paths = [tmp_path / f"accuracy.{ext}" for ext in ("csv", "md", "html")]
    report.write_table(table, *paths, display=report.accuracy_display(table))
    assert pd.read_csv(paths[0])["accuracy_mean"].iloc[-1] == pytest.approx(0.85)
    assert "| 30 | 65.0 ± 7.1 | 65.0 ± 14.1 (+0.0) | 85.0 ± 7.1 (+20.0) |" in paths[1].read_text()
    assert "<td>85.0 ± 7.1 (+20.0)</td>" in paths[2].read_text()


def test_sampling_time_and_health_tables():
    summary = TOY.copy()
    summary["query_seconds"] = np.where(summary["stage"] < 2, summary["seed"] + 1.0, np.nan)
    summary["diag_vae_recon_mse"] = np.where(summary["method"] == "vaal", 0.2, np.nan)
    summary["diag_mean_image_mse"] = np.where(summary["method"] == "vaal", 0.5, np.nan)
    summary["diag_disc_auc"] = np.where(summary["method"] == "vaal", 0.75, np.nan)
    summary.loc[summary["stage"] == 2, ["diag_vae_recon_mse", "diag_mean_image_mse"]] = np.nan
    summary.loc[summary["stage"] == 2, "diag_disc_auc"] = np.nan
    times = report.sampling_time_table(summary).set_index("method")
    assert times.loc["random", "mean_seconds"] == pytest.approx(1.5)
    assert times.loc["random", "queries"] == 4
    health = report.adversarial_health_table(summary)
    assert list(health["method"].unique()) == ["vaal"]
    assert list(health["stage"]) == [0, 1]
    assert health["recon_ratio"].iloc[0] == pytest.approx(0.4)
    assert list(health.columns) == [
        "method",
        "stage",
        "labels",
        "seeds",
        "vae_recon_mse",
        "mean_image_mse",
        "recon_ratio",
        "disc_auc",
    ]


def _method_lines(ax):
    return [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")]


def test_plot_accuracy_draws_one_line_per_method():
    fig = report.plot_accuracy(TOY)
    (ax,) = fig.axes
    assert _method_lines(ax) == ["Random", "VAAL", "TA-VAAL"]
    tavaal = next(line for line in ax.get_lines() if line.get_label() == "TA-VAAL")
    np.testing.assert_allclose(tavaal.get_xdata(), [10, 20, 30])
    np.testing.assert_allclose(tavaal.get_ydata(), [45.0, 70.0, 85.0])


def test_plot_improvement_puts_the_baseline_at_zero():
    fig = report.plot_improvement(TOY, "random")
    (ax,) = fig.axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert _method_lines(ax) == ["Random", "VAAL", "TA-VAAL"]
    np.testing.assert_allclose(lines["Random"].get_ydata(), [0, 0, 0])
    np.testing.assert_allclose(lines["TA-VAAL"].get_ydata(), [0.0, 15.0, 20.0])


def test_plot_class_entropy_has_two_panels_of_method_lines():
    summary = TOY.assign(labeled_class_entropy=0.5, selected_class_entropy=0.25, num_classes=2)
    fig = report.plot_class_entropy(summary)
    panels = [ax for ax in fig.axes if ax.get_lines()]
    assert len(panels) == 2
    for ax in panels:
        assert _method_lines(ax) == ["Random", "VAAL", "TA-VAAL"]
        reference = [line for line in ax.get_lines() if line.get_label() == "_balanced"]
        assert reference[0].get_ydata()[0] == pytest.approx(math.log(2))


def _band(ax, index):
    """Lower and upper edge of the index-th shaded band (fill_between) of an axes."""
    vertices = ax.collections[index].get_paths()[0].vertices
    x, y = vertices[:, 0], vertices[:, 1]
    points = len(set(x))
    return y[1 : points + 1], y[points + 2 : 2 * points + 2][::-1]


def test_class_entropy_bands_stay_within_zero_and_log_k():
    # Three seeds, one batch of a single class (entropy 0), two nearly balanced: mean ± std
    # would reach below 0 and above log 2; the band drawn is the lowest to the highest seed.
    log2 = math.log(2)
    summary = make_summary({"random": [[0.0, log2], [0.0, log2], [0.6, 0.05]]}, labels=(10, 20))
    summary = summary.assign(
        labeled_class_entropy=summary["accuracy"],
        selected_class_entropy=summary["accuracy"],
        num_classes=2,
    )
    curves = report.learning_curves(summary, "selected_class_entropy")
    assert ((curves["mean"] - curves["std"]) < 0).any()
    assert ((curves["mean"] + curves["std"]) > log2).any()
    fig = report.plot_class_entropy(summary)
    for ax in fig.axes:
        low, high = _band(ax, 0)
        np.testing.assert_allclose(low, [0.0, 0.05])
        np.testing.assert_allclose(high, [0.6, log2])
    assert "lowest to highest seed" in fig._suptitle.get_text()


def test_label_axes_have_integer_ticks_at_the_stage_counts():
    fig = report.plot_accuracy(TOY)
    (ax,) = fig.axes
    assert list(ax.get_xticks()) == [10, 20, 30]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["10", "20", "30"]
    improvement = report.plot_improvement(TOY, "random")
    assert list(improvement.axes[0].get_xticks()) == [10, 20, 30]
    entropy = report.plot_class_entropy(
        TOY.assign(labeled_class_entropy=0.5, selected_class_entropy=0.25, num_classes=2)
    )
    assert all(list(ax.get_xticks()) == [10, 20, 30] for ax in entropy.axes)
    # Too many stages to tick each: matplotlib's ticks, integers only.
    # (labels 1 ... 21 would get ticks at 2.5, 7.5, ... by default).
    many = make_summary({"random": [[0.5] * 21]}, labels=range(1, 22))
    ticks = report.plot_accuracy(many).axes[0].get_xticks()
    assert len(ticks) < 21
    assert all(float(t).is_integer() for t in ticks)


def _query_frames(seeds=(0, 0)) -> dict[str, pd.DataFrame]:
    """Scores of the last query of VAAL and TA-VAAL: 50 candidates each, the first 5 chosen."""
    rng = np.random.default_rng(0)
    return {
        method: pd.DataFrame(
            {
                "index": np.arange(50),
                "disc_output": rng.uniform(size=50),
                "true_loss": rng.uniform(size=50),
                "chosen": np.arange(50) < 5,
                "experiment": "toy",
                "seed": seed,
                "stage": 3,
            }
        )
        for method, seed in zip(("tavaal", "vaal"), seeds, strict=True)
    }


def test_histogram_loss_and_selection_figures():
    frames = _query_frames()
    hist = report.plot_discriminator_histogram(frames, stage=3)
    (ax,) = hist.axes
    legend = [text.get_text().split(" (")[0] for text in ax.get_legend().get_texts()]
    assert legend == ["VAAL", "TA-VAAL"]
    assert sum(p.get_height() for p in ax.containers[0].patches) == 50
    scatter = report.plot_loss_vs_likelihood(frames, stage=3)
    assert [ax.get_title().split(" (")[0] for ax in scatter.axes] == ["VAAL", "TA-VAAL"]
    gx, gy = np.meshgrid(np.linspace(-1, 1, 5), np.linspace(-1, 1, 5))
    panels = [
        report.SelectionPanel(m, 1, np.array([0, 1]), np.array([2]), gx, gy, (gx > 0).astype(float))
        for m in ("tavaal", "random")
    ]
    points = np.random.default_rng(1).normal(size=(10, 2))
    selection = report.plot_selection(points, np.arange(10) % 2, panels, stage=1)
    assert [ax.get_title() for ax in selection.axes] == ["Random", "TA-VAAL"]


def test_figure_titles_name_the_seeds_they_show():
    pooled = report.plot_discriminator_histogram(_query_frames(seeds=(0, 1)), stage=3)
    assert pooled.axes[0].get_title().endswith("(stage 3), seeds 0, 1 pooled")
    one = report.plot_loss_vs_likelihood(_query_frames(seeds=(2, 2)), stage=3)
    assert one._suptitle.get_text() == "true loss vs likelihood at query stage 3, seed 2"
    gx, gy = np.meshgrid(np.linspace(-1, 1, 5), np.linspace(-1, 1, 5))
    panel = report.SelectionPanel("random", 4, np.array([0]), np.array([1]), gx, gy, gx > 0)
    selection = report.plot_selection(np.zeros((3, 2)), np.array([0, 1, 0]), [panel], stage=1)
    assert selection._suptitle.get_text().startswith("points selected at query stage 1, seed 4 ")


def test_loss_axis_shows_zero_and_large_losses_apart():
    # A confident task learner: most losses exactly 0, a few near 1e-4, one of 100.
    frames = _query_frames()
    loss = np.zeros(50)
    loss[:10] = 1e-4
    loss[10] = 100.0
    frames = {m: f.assign(true_loss=loss) for m, f in frames.items()}
    fig = report.plot_loss_vs_likelihood(frames, stage=3)
    fig.canvas.draw()
    for ax in fig.axes:
        assert ax.get_yscale() == "symlog"

        def height(y, ax=ax):  # 0 at the bottom of the axes, 1 at the top
            return ax.transAxes.inverted().transform(ax.transData.transform((0.5, y)))[1]

        # On a linear axis up to 100, 0 and 1e-4 would be the same pixel row.
        assert height(1e-4) - height(0.0) > 0.2
        assert 0 <= height(0.0) < height(100.0) <= 1
        assert "39 of 50 with loss <" in ax.get_legend().get_texts()[0].get_text()


def test_loss_likelihood_correlation_is_spearmans_rho_of_loss_and_likelihood():
    # Likelihood rises 0.1 ... 0.4; loss ranks 1, 3, 2, 4: rho = 1 - 6 * 2 / (4 * 15).
    rho, p_value = report.loss_likelihood_correlation([0.1, 0.2, 0.3, 0.4], [1.0, 3.0, 2.0, 4.0])
    assert rho == pytest.approx(0.8)
    assert 0 < p_value < 1
    rho, _ = report.loss_likelihood_correlation([0.1, 0.2, 0.3, 0.4], [4.0, 3.0, 2.0, 1.0])
    assert rho == pytest.approx(-1.0)
    assert all(math.isnan(v) for v in report.loss_likelihood_correlation([0.5] * 4, range(4)))
    assert all(math.isnan(v) for v in report.loss_likelihood_correlation([0.1, 0.2], [1, 2]))


def test_unlabeled_likelihood_orders_confident_logits_that_probabilities_tie():
    # Logits -40, -50, -60: 1 - sigmoid(logit) is 1.0 for all three in float64.
    scores = pd.DataFrame({"disc_logit": [-40.0, -50.0, -60.0], "disc_output": [0.0, 0.0, 0.0]})
    assert report.unlabeled_likelihood(scores).tolist() == [40.0, 50.0, 60.0]
    rho, _ = report.loss_likelihood_correlation(report.unlabeled_likelihood(scores), [1, 2, 3])
    assert rho == pytest.approx(1.0)
    legacy = pd.DataFrame({"disc_output": [0.9, 0.2]})  # scores written before disc_logit
    np.testing.assert_allclose(report.unlabeled_likelihood(legacy), [0.1, 0.8])


def test_loss_likelihood_table_per_method():
    frames = {
        "vaal": pd.DataFrame(
            {
                "disc_output": [0.9, 0.8, 0.7, 0.6],
                "true_loss": [1.0, 3.0, 2.0, 4.0],
                "chosen": [False, False, True, True],
                "experiment": "toy",
                "seed": 0,
                "stage": 2,
            }
        )
    }
    row = report.loss_likelihood_table(frames).iloc[0]
    assert (row["experiment"], row["method"], row["seed"], row["stage"]) == ("toy", "vaal", 0, 2)
    assert row["candidates"] == 4
    assert row["spearman_rho"] == pytest.approx(0.8)
    assert row["chosen_true_loss"] == pytest.approx(3.0)
    assert row["candidate_true_loss"] == pytest.approx(2.5)


def _write_run(tmp_path, method, seed, stages, num_classes=3):
    """Files of one (method, seed) run: metrics per stage, the last index file, scores."""
    run = tmp_path / method / f"seed{seed}"
    labels_per_stage = [[0, 0, 1, 1], [2, 2], [0, 1]][:stages]
    rows, index = [], 0
    for stage, labels in enumerate(labels_per_stage):
        for label in labels:
            rows.append((index, label, stage))
            index += 1
    metrics, scores = [], []
    for stage in range(stages):
        path = run / f"stage{stage}" / "metrics.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        labeled = sum(len(labels_per_stage[k]) for k in range(stage + 1))
        path.write_text(
            json.dumps(
                {
                    "experiment": "toy",
                    "method": method,
                    "seed": seed,
                    "stage": stage,
                    "labels": labeled,
                    "accuracy": 0.5 + 0.1 * stage,
                    "per_class_accuracy": [0.4, None, 0.9][:num_classes],
                    "test_loss": 1.0,
                    "train_seconds": 2.0,
                    "epochs": 3,
                    "images_per_second": 10.0,
                    "labeled_class_entropy": 0.0,
                }
            )
        )
        metrics.append(path)
        if stage < stages - 1:
            table = pd.DataFrame(
                {"index": [10, 11, 12], "score": [0.3, 0.2, 0.1], "chosen": [True, True, False]}
            )
            table["true_loss"] = [1.0, 3.0, 5.0]
            meta = {
                "experiment": "toy",
                "method": method,
                "seed": seed,
                "stage": stage,
                "query_seconds": 1.5 + stage,
                "diagnostics": {"disc_auc": 0.6, "vae_recon_mse": 0.1},
            }
            path = run / f"stage{stage}" / "scores.parquet"
            write_scores(path, table, meta)
            scores.append(path)
    index_arr = np.array([r[0] for r in rows])
    table = make_table(index_arr, np.array([r[1] for r in rows]), np.array([r[2] for r in rows]))
    labeled_path = run / f"stage{stages - 1}" / "labeled.parquet"
    write_labeled(
        labeled_path,
        table,
        {
            "experiment": "toy",
            "method": method,
            "seed": seed,
            "stage": stages - 1,
            "settings_hash": "x",
        },
    )
    return metrics, [labeled_path], scores


# The true labels of _write_run's indices 0..7: what its index files say (an ideal oracle).
TRUE_LABELS = np.array([0, 0, 1, 1, 2, 2, 0, 1])


def test_build_summary_from_files(tmp_path):
    metrics, labeled, scores = [], [], []
    for method in ("tavaal", "random"):
        for seed in (0, 1):
            m, lab, s = _write_run(tmp_path, method, seed, stages=3)
            metrics += m
            labeled += lab
            scores += s
    summary = report.build_summary(metrics, labeled, scores, num_classes=3, y_train=TRUE_LABELS)
    assert len(summary) == 2 * 2 * 3
    assert not summary.duplicated(["method", "seed", "stage"]).any()
    assert list(summary["method"].unique()) == ["random", "tavaal"]
    row = summary[(summary["method"] == "tavaal") & (summary["seed"] == 1)].set_index("stage")
    # Stage 0 added labels (0, 0, 1, 1): entropy log 2; stage 1 added (2, 2): 0.
    assert row.loc[0, "selected_class_entropy"] == pytest.approx(math.log(2))
    assert row.loc[1, "selected_class_entropy"] == pytest.approx(0.0)
    # Labeled set at stage 1: classes (2, 2, 2) -> uniform over 3 classes.
    assert row.loc[1, "labeled_class_entropy"] == pytest.approx(math.log(3))
    assert row.loc[0, "selected"] == 4
    assert row.loc[1, "query_seconds"] == pytest.approx(2.5)
    assert math.isnan(row.loc[2, "query_seconds"])
    assert row.loc[0, "diag_disc_auc"] == pytest.approx(0.6)
    assert row.loc[0, "chosen_true_loss"] == pytest.approx(2.0)
    assert row.loc[0, "candidate_true_loss"] == pytest.approx(3.0)
    assert row.loc[0, "min_class_accuracy"] == pytest.approx(0.4)
    assert (summary["num_classes"] == 3).all()
    # The ideal oracle: every label is the true one.
    assert (summary[["wrong_labels", "queried_wrong_labels"]] == 0).all(axis=None)
    path = tmp_path / "out" / "summary.parquet"
    report.write_summary(summary, path)
    pd.testing.assert_frame_equal(report.read_summary(path), summary)


def _noisy_runs(tmp_path):
    """_write_run's files of lloss, seeds 0 and 1, stages 0-2 (indices 0-3 in the initial pool,
    4-5 bought at stage 1, 6-7 at stage 2), and true labels that the oracle's differ from at
    index 1 (initial pool), 5 (stage 1) and 6 (stage 2)."""
    metrics, labeled, scores = [], [], []
    for seed in (0, 1):
        m, lab, s = _write_run(tmp_path, "lloss", seed, stages=3)
        metrics, labeled, scores = metrics + m, labeled + lab, scores + s
    truth = TRUE_LABELS.copy()
    truth[[1, 5, 6]] = [2, 1, 2]
    return report.build_summary(metrics, labeled, scores, num_classes=3, y_train=truth)


def test_summary_counts_the_wrong_labels_of_a_noisy_oracle(tmp_path):
    summary = _noisy_runs(tmp_path)
    for seed in (0, 1):
        rows = summary[summary["seed"] == seed].set_index("stage")
        # Every stage's labeled set: all samples added up to it.
        assert rows["wrong_labels"].tolist() == [1, 2, 3]
        # Bought by queries: stage_added >= 1 only, the initial pool's wrong label left out.
        assert rows["queried_wrong_labels"].tolist() == [0, 1, 2]


def test_oracle_errors_table_shares_of_bought_labels(tmp_path):
    summary = _noisy_runs(tmp_path)
    # Seed 1 bought no wrong label at stage 1 (as if its sample 5 were labeled right).
    seed1 = (summary["seed"] == 1) & (summary["stage"] >= 1)
    summary.loc[seed1, ["wrong_labels", "queried_wrong_labels"]] -= 1
    table = report.oracle_errors_table(summary, noise=0.2).set_index("stage")
    assert table["labels"].tolist() == [4, 6, 8]
    assert table["seeds"].tolist() == [2, 2, 2]
    assert table["wrong_labels"].tolist() == pytest.approx([1.0, 1.5, 2.5])
    assert table["queried_wrong_labels"].tolist() == pytest.approx([0.0, 0.5, 1.5])
    assert table["queried_labels"].tolist() == [0, 2, 4]
    # (1 + 0) of 2 + 2 bought at stage 1; (2 + 1) of 4 + 4 by stage 2; nothing bought at 0.
    assert math.isnan(table.loc[0, "queried_wrong_share"])
    assert table.loc[1, "queried_wrong_share"] == pytest.approx(0.25)
    assert table.loc[2, "queried_wrong_share"] == pytest.approx(0.375)
    assert (table["oracle_noise"] == 0.2).all()
