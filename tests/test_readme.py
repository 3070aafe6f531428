"""tavaal.report.readme: the README's results section from a synthetic run, and the splice."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from tavaal import cli
from tavaal.errors import ReadmeError
from tavaal.report import write_summary
from tavaal.report.readme import (
    begin_marker,
    end_marker,
    experiment_section,
    interval_verdict,
    results_section,
    splice_results,
    update_readme,
)

# accuracy[method][seed] over stages 0, 1, 2 (10, 20, 30 labels). Paired AULC differences to
# random per seed: entropy +0.1, +0.15, +0.075 (interval above 0); coreset -0.075, -0.05,
# -0.0625 (below 0); vaal +0.025, -0.01, +0.0125 (contains 0).
ACCURACY = {
    "random": [[0.5, 0.6, 0.7], [0.5, 0.6, 0.7], [0.5, 0.6, 0.7]],
    "entropy": [[0.5, 0.7, 0.9], [0.5, 0.8, 0.9], [0.5, 0.7, 0.8]],
    "coreset": [[0.5, 0.5, 0.6], [0.5, 0.55, 0.6], [0.5, 0.5, 0.65]],
    "vaal": [[0.5, 0.65, 0.7], [0.5, 0.58, 0.7], [0.5, 0.6, 0.75]],
}
# Class-count entropy (2 classes, balanced: log 2 = 0.693) of the batch added and of the
# labeled set, for (seed, stage) = (0, 1), (0, 2), (1, 1), (1, 2), (2, 1), (2, 2).
BATCH_ENTROPY = {
    "random": [0.60, 0.62, 0.64, 0.66, 0.68, 0.69],
    "entropy": [0.65, 0.66, 0.67, 0.68, 0.69, 0.69],
    "coreset": [0.62, 0.63, 0.64, 0.65, 0.66, 0.66],
    "vaal": [0.10, 0.14, 0.18, 0.22, 0.26, 0.30],
}
LABELED_ENTROPY = {
    "random": [0.66, 0.66, 0.67, 0.67, 0.68, 0.68],
    "entropy": [0.69, 0.69, 0.69, 0.69, 0.69, 0.69],
    "coreset": [0.67, 0.67, 0.68, 0.68, 0.69, 0.69],
    "vaal": [0.40, 0.43, 0.46, 0.49, 0.52, 0.55],
}
SECONDS = {"random": 0.01, "entropy": 0.5, "coreset": 1.5, "vaal": 5.0}


def synthetic_summary(experiment: str = "toy") -> pd.DataFrame:
    rows = []
    for method, per_seed in ACCURACY.items():
        for seed, accuracies in enumerate(per_seed):
            for stage, accuracy in enumerate(accuracies):
                k = 2 * seed + stage - 1  # position in the entropy lists (stage > 0)
                row = {
                    "experiment": experiment,
                    "method": method,
                    "seed": seed,
                    "stage": stage,
                    "labels": 10 * (stage + 1),
                    "accuracy": accuracy,
                    # Stage 0 is the shared initial pool: left out of the ranges.
                    "selected_class_entropy": 0.0 if stage == 0 else BATCH_ENTROPY[method][k],
                    "labeled_class_entropy": 0.0 if stage == 0 else LABELED_ENTROPY[method][k],
                    "num_classes": 2,
                    # Seed 1 is 10% slower, seed 2 20%; the last stage makes no query.
                    "query_seconds": SECONDS[method] * (1 + seed / 10) if stage < 2 else math.nan,
                }
                if method == "vaal" and stage < 2:
                    query = 2 * seed + stage  # 0 ... 5
                    row["diag_vae_recon_mse"] = 0.5 + 0.05 * query
                    row["diag_mean_image_mse"] = 1.0
                    row["diag_disc_auc"] = 0.6 + 0.02 * query
                rows.append(row)
    return pd.DataFrame(rows)


LOSS_LIKELIHOOD = pd.DataFrame(
    [
        {
            "experiment": "toy",
            "method": "vaal",
            "seed": 0,
            "stage": 1,
            "candidates": 60,
            "spearman_rho": 0.31,
            "p_value": 0.016,
            "chosen_true_loss": 0.9,
            "candidate_true_loss": 0.4,
        }
    ]
)


@pytest.fixture(scope="module")
def section() -> str:
    return experiment_section(synthetic_summary(), LOSS_LIKELIHOOD)


def test_section_states_what_was_run(section):
    assert section.startswith("## `toy`\n\n")
    assert (
        "3 seeds (0, 1, 2); 3 stages, 10 to 30 labels; "
        "methods: Random, Entropy, Core-set and VAAL." in section
    )


def test_accuracy_table_with_paired_differences(section):
    assert "| labels | Random | Entropy | Core-set | VAAL |" in section
    assert "| 10 | 50.0 ± 0.0 | 50.0 ± 0.0 | 50.0 ± 0.0 | 50.0 ± 0.0 |" in section
    # Entropy at 20 labels: 70, 80, 70 -> 73.3 ± 5.8, +13.3 over random's 60.
    assert "| 20 | 60.0 ± 0.0 | 73.3 ± 5.8 (+13.3) | 51.7 ± 2.9 (−8.3) | 61.0 ± 3.6 (+1.0) |" in (
        section
    )
    assert "| 30 | 70.0 ± 0.0 | 86.7 ± 5.8 (+16.7) | 61.7 ± 2.9 (−8.3) | 71.7 ± 2.9 (+1.7) |" in (
        section
    )
    assert "At 30 labels the highest mean accuracy is Entropy's (86.7%)." in section


def test_aulc_rows_and_the_sentences_that_follow_from_their_intervals(section):
    # Entropy: differences 0.1, 0.15, 0.075: mean 0.1083, sd 0.0382, t(0.975, 2) = 4.303
    # -> half width 0.0949: [0.013, 0.203].
    assert "| Entropy | 0.708 | +0.108 | [+0.013, +0.203] |" in section
    assert "| Core-set | 0.538 | −0.062 | [−0.094, −0.031] |" in section
    assert "| VAAL | 0.609 | +0.009 | [−0.035, +0.053] |" in section
    assert (
        "Entropy beats Random (interval above 0). "
        "VAAL is not distinguishable from Random (interval contains 0). "
        "Core-set does worse than Random (interval below 0)." in section
    )


def test_class_entropy_ranges_leave_out_the_initial_pool(section):
    assert "(balanced: 0.69)" in section
    assert "| Random | 0.60–0.69 | 0.66–0.68 |" in section
    assert "| VAAL | 0.10–0.30 | 0.40–0.55 |" in section
    # Only ranges wholly apart from random's count: entropy's batches overlap random's.
    assert "Added batches less balanced than Random's: VAAL (ranges apart)." in section
    assert (
        "Labeled sets more balanced than Random's: Entropy; "
        "less balanced than Random's: VAAL (ranges apart)." in section
    )


def test_adversarial_health_ranges_and_sentence(section):
    # recon ratio 0.50 ... 0.75, AUC 0.60 ... 0.70 over the six queries.
    assert "| VAAL | 0.50–0.75 | 0.60–0.70 |" in section
    assert (
        "VAAL: the VAE reconstructs better than the mean image at every query (ratio below 1); "
        "the discriminator tells labeled from unlabeled better than chance at every query "
        "(AUC above 0.5)." in section
    )


def test_loss_likelihood_row_and_sentence(section):
    assert "at the last query (stage 1, seed 0):" in section
    assert "| VAAL | +0.31 | 0.016 | 0.9 | 0.4 |" in section
    assert (
        "VAAL: the likelihood rises with the true loss (p < 0.05); "
        "its picks' mean true loss is higher than the candidates'." in section
    )


def test_sampling_time_per_method(section):
    # Two queries per seed of 5 s x 1.0, 1.1, 1.2: mean 5.5.
    assert "| VAAL | 5.5 | 5–6 | 6 |" in section
    assert "| Random | 0.011 | 0.01–0.012 | 6 |" in section
    assert "| Core-set | 1.7 | 1.5–1.8 | 6 |" in section
    assert "Fastest on average: Random; slowest: VAAL." in section


def test_words_change_with_the_numbers():
    summary = synthetic_summary()
    # A collapsed VAE and a blind discriminator at one query.
    summary.loc[(summary["method"] == "vaal") & (summary["stage"] == 0), "diag_disc_auc"] = 0.5
    summary.loc[(summary["method"] == "vaal") & (summary["stage"] == 1), "diag_vae_recon_mse"] = 1
    weak = LOSS_LIKELIHOOD.assign(spearman_rho=-0.05, p_value=0.7, chosen_true_loss=0.3)
    text = experiment_section(summary, weak)
    assert "the VAE does not beat the mean image at every query" in text
    assert "the discriminator is at or below chance at some query" in text
    assert "VAAL: no detectable relation of likelihood and true loss (p ≥ 0.05)" in text
    assert "its picks' mean true loss is no higher than the candidates'" in text
    assert "| VAAL | −0.05 | 0.700 |" in text


def test_no_negative_zero_and_tiny_times_are_bounded():
    summary = synthetic_summary()
    vaal_batches = (summary["method"] == "vaal") & (summary["stage"] > 0)
    summary.loc[vaal_batches & (summary["seed"] == 0), "selected_class_entropy"] = -0.0
    summary.loc[summary["method"] == "random", "query_seconds"] *= 0.01
    text = experiment_section(summary)
    assert "| VAAL | 0.00–0.30 |" in text
    assert "| Random | 0.00011 | 0.0001–0.00012 | 6 |" in text


def test_interval_verdicts():
    assert interval_verdict(0.01, 0.2) == "above"
    assert interval_verdict(-0.2, -0.01) == "below"
    assert interval_verdict(-0.1, 0.1) == "contains"
    assert interval_verdict(0.0, 0.1) == "contains"
    assert interval_verdict(math.nan, math.nan) == "none"


def test_without_the_baseline_there_is_no_paired_comparison():
    summary = synthetic_summary()
    text = experiment_section(summary[summary["method"] != "random"])
    assert "paired" not in text
    assert "| labels | Entropy | Core-set | VAAL |" in text
    assert "Random" not in text


def test_results_section_from_files_matches_tables_to_experiments(tmp_path):
    write_summary(synthetic_summary("toy"), tmp_path / "toy.parquet")
    write_summary(synthetic_summary("other"), tmp_path / "other.parquet")
    LOSS_LIKELIHOOD.to_csv(tmp_path / "toy_loss.csv", index=False)
    text = results_section(
        [tmp_path / "toy.parquet", tmp_path / "other.parquet"], [tmp_path / "toy_loss.csv"]
    )
    assert text.startswith("<!-- Generated by `snakemake readme_results`")
    toy, other = text.split("## `other`")
    assert "## `toy`" in toy and "| VAAL | +0.31 |" in toy
    assert "Spearman" not in other
    assert "| Entropy | 0.708 | +0.108 | [+0.013, +0.203] |" in other


# -------------------------------------------------------------------------------- splicing

BEGIN_MARKER, END_MARKER = begin_marker(), end_marker()

README = (
    "# title\r\n\r\nintro ü\n"
    f"{BEGIN_MARKER}\nold numbers 1.0\n{END_MARKER}\n"
    "### next\r\ntail without newline"
)


def test_splice_keeps_everything_outside_the_markers():
    new = splice_results(README, "\nnew **numbers** 2.0\n\n")
    head, tail = README.split(BEGIN_MARKER)[0], README.split(END_MARKER)[1]
    assert new == f"{head}{BEGIN_MARKER}\nnew **numbers** 2.0\n{END_MARKER}{tail}"
    assert splice_results(new, "new **numbers** 2.0") == new


@pytest.mark.parametrize(
    "readme, problem",
    [
        ("no markers at all\n", "found 0 and 0"),
        (f"{BEGIN_MARKER}\nonly the start\n", "found 1 and 0"),
        (f"{BEGIN_MARKER}\na\n{END_MARKER}\n{BEGIN_MARKER}\nb\n{END_MARKER}\n", "found 2 and 2"),
        (f"{END_MARKER}\nreversed\n{BEGIN_MARKER}\n", "comes before"),
    ],
)
def test_splice_refuses_a_readme_without_one_pair_of_markers(readme, problem):
    with pytest.raises(ReadmeError, match=problem):
        splice_results(readme, "x")


def test_readme_update_command_rewrites_only_the_section(tmp_path, capsys):
    readme, section = tmp_path / "README.md", tmp_path / "section.md"
    readme.write_bytes(README.encode())
    section.write_text("fresh 3.0\n")
    assert cli.main(["readme-update", str(readme), str(section)]) == 0
    expected = README.replace("old numbers 1.0", "fresh 3.0").encode()
    assert readme.read_bytes() == expected
    readme.write_text("no markers\n")
    assert cli.main(["readme-update", str(readme), str(section)]) == 2
    assert "tavaal: error: the README needs exactly one" in capsys.readouterr().err
    assert readme.read_text() == "no markers\n"
    with pytest.raises(ReadmeError, match="no such file"):
        update_readme(tmp_path / "missing.md", section)


def test_named_sections_are_replaced_one_at_a_time(tmp_path):
    text = (
        f"a\n{begin_marker('fmnist')}\nold f\n{end_marker('fmnist')}\n"
        f"b\n{BEGIN_MARKER}\nold d\n{END_MARKER}\n"
    )
    new = splice_results(text, "new f", "fmnist")
    assert new == text.replace("old f", "new f")
    assert splice_results(new, "new d") == new.replace("old d", "new d")
    with pytest.raises(ReadmeError, match="results:study:begin"):
        splice_results(text, "x", "study")
    readme, section = tmp_path / "README.md", tmp_path / "s.md"
    readme.write_text(text)
    section.write_text("from file\n")
    assert cli.main(["readme-update", str(readme), str(section), "--name", "fmnist"]) == 0
    assert readme.read_text() == text.replace("old f", "from file")


def test_study_section_says_where_each_method_moved():
    from tavaal.report.readme import study_section

    table = pd.DataFrame(
        {
            "experiment": ["d", "d", "d_beta"],
            "changes": ["(baseline)", "(baseline)", "vae.beta: 0.1 → 1.0"],
            "method": ["vaal", "entropy", "vaal"],
            "seeds": [3, 3, 3],
            "aulc_diff_mean": [0.01, 0.05, -0.03],
            "aulc_diff_ci_low": [-0.02, 0.02, -0.05],
            "aulc_diff_ci_high": [0.04, 0.08, -0.01],
            "recon_ratio": [0.8, math.nan, 0.99],
            "disc_auc": [0.6, math.nan, 0.51],
            "rank_input_informative": [math.nan, math.nan, math.nan],
            "baseline_aulc": [0.9, 0.9, 0.9],
        }
    )
    text = study_section(table, "digits_adversary")
    assert "## Study `digits_adversary`" in text
    assert "| d_beta | vae.beta: 0.1 → 1.0 | VAAL | -3.0 [-5.0, -1.0] | 0.99 | 0.51 | — |" in text
    assert (
        "Entropy: above Random in `d`. VAAL: below Random in `d_beta`; not distinguishable "
        "from Random in `d`." in text
    )
    assert (
        "Order by mean AULC − Random (accuracy points), best first:\n\n"
        "- `d`: Entropy (+5.0) > VAAL (+1.0) > Random; Random's own AULC 90.0\n"
        "- `d_beta`: Random > VAAL (-3.0); Random's own AULC 90.0\n" in text
    )


def test_the_practitioner_tutorial_block_and_figures_come_from_its_script():
    """docs/labeling.md: docs/practitioner_tutorial.py writes the block between the
    practitioner markers (with splice_results) and the two figures the page shows."""
    repo = Path(__file__).resolve().parents[1]
    readme = (repo / "docs" / "labeling.md").read_text()
    block = readme.split(begin_marker("practitioner"))[1].split(end_marker("practitioner"))[0]
    assert "Generated by docs/practitioner_tutorial.py" in block
    assert "waits for labels: label the images of" in block
    assert "nothing: all labeled" in block
    for figure in ("practitioner_contact_sheet.png", "practitioner_label_page.png"):
        assert (repo / "docs/figures" / figure).is_file()
        assert f"](figures/{figure})" in readme
