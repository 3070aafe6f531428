"""Rule table_plain_retraining: each method's own task learner against a plain classifier
retrained on its labeled sets (TA-VAAL §6.1), as a table and a figure."""

from tavaal.report import (
    plain_retraining_display,
    plain_retraining_table,
    plot_plain_retraining,
    read_retraining,
    save_figure,
    write_table,
)
from tavaal.stage import workflow_job

# Set by the script preamble that Snakemake puts in front of this file.
snakemake = globals()["snakemake"]

with workflow_job(snakemake.log[0]) as log:
    own, plain, reference = read_retraining(
        snakemake.input.own,
        snakemake.input.plain,
        snakemake.params.methods,
        snakemake.input.reference,
        snakemake.params.reference,
    )
    table = plain_retraining_table(own, plain, reference)
    experiment = snakemake.wildcards.experiment
    title = f"{experiment}: own task learner vs a plain classifier on the same labeled sets"
    out = snakemake.output
    shown = plain_retraining_display(table)
    write_table(table, out.csv, out.md, out.html, display=shown, title=title)
    save_figure(plot_plain_retraining(table, title), out.figure)
    log(f"{len(table)} (method, stage) rows")
