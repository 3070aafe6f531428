"""Rule figure_loss_vs_likelihood: true loss vs likelihood of being unlabeled (TA-VAAL Fig. 8),
and its numbers (Spearman's ρ per method) as a table."""

from tavaal.config import ExperimentConfig
from tavaal.report import (
    loss_likelihood_frames,
    loss_likelihood_table,
    plot_loss_vs_likelihood,
    save_figure,
    write_table,
)
from tavaal.stage import workflow_job

# Set by the script preamble that Snakemake puts in front of this file.
snakemake = globals()["snakemake"]

with workflow_job(snakemake.log[0]) as log:
    settings = dict(snakemake.params.experiment)
    frames = loss_likelihood_frames(
        ExperimentConfig.from_dict(settings.pop("name"), settings),
        snakemake.input.scores,
        snakemake.input.models,
        snakemake.input.dataset,
        device=snakemake.config["device"],
    )
    out = snakemake.output
    save_figure(plot_loss_vs_likelihood(frames, snakemake.params.stage), out.figure)
    table = loss_likelihood_table(frames)
    title = "True loss vs likelihood of being unlabeled at the last query"
    write_table(table, out.csv, out.md, out.html, title=title)
    for row in table.itertuples(index=False):
        log(f"{row.method}: Spearman rho {row.spearman_rho:.3f} over {row.candidates} candidates")
