"""Rule study: a study's variants against random, with the adversarial part's health, and the
learning curves of its experiments (VAAL Fig. 5)."""

from tavaal.config import ExperimentConfig
from tavaal.report import read_summary, save_figure, write_table
from tavaal.report.study import (
    plot_study,
    plot_study_curves,
    study_display,
    study_score,
    study_table,
)
from tavaal.stage import workflow_job

# Set by the script preamble that Snakemake puts in front of this file.
snakemake = globals()["snakemake"]

with workflow_job(snakemake.log[0]) as log:
    experiments = []
    for entry in snakemake.params.experiments:
        settings = dict(entry)
        experiments.append(ExperimentConfig.from_dict(settings.pop("name"), settings))
    summaries = {
        exp.name: read_summary(path) for exp, path in zip(experiments, snakemake.input, strict=True)
    }
    baseline, confidence = snakemake.params.baseline, snakemake.params.confidence
    table = study_table(experiments, summaries, baseline, confidence)
    study = snakemake.wildcards.study
    title = f"Study {study}: area under the learning curve minus {baseline}'s"
    out = snakemake.output
    write_table(table, out.csv, out.md, out.html, display=study_display(table), title=title)
    save_figure(plot_study(table, title, confidence), out.figure)
    curves_title = f"Study {study}: test {study_score(table).name} per experiment"
    save_figure(plot_study_curves(experiments, summaries, baseline, curves_title), out.curves)
    log(f"{len(table)} (variant, method) rows from {len(experiments)} experiments")
