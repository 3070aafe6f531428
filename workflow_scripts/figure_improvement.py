"""Rule figure_improvement: accuracy minus the baseline's, paired by seed (TA-VAAL Fig. 3-5)."""

from tavaal.report import plot_improvement, read_summary, save_figure
from tavaal.stage import workflow_job

# Set by the script preamble that Snakemake puts in front of this file.
snakemake = globals()["snakemake"]

with workflow_job(snakemake.log[0]) as log:
    figure = plot_improvement(read_summary(snakemake.input[0]), snakemake.params.baseline)
    save_figure(figure, snakemake.output[0])
    log(f"wrote {snakemake.output[0]}")
