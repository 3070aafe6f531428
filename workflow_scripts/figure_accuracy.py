"""Rule figure_accuracy: absolute learning curves (TA-VAAL Fig. 11-12)."""

from tavaal.report import plot_accuracy, read_summary, save_figure
from tavaal.stage import workflow_job

# Set by the script preamble that Snakemake puts in front of this file.
snakemake = globals()["snakemake"]

with workflow_job(snakemake.log[0]) as log:
    save_figure(plot_accuracy(read_summary(snakemake.input[0])), snakemake.output[0])
    log(f"wrote {snakemake.output[0]}")
