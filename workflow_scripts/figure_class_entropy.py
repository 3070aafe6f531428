"""Rule figure_class_entropy: class-count entropy of the selected samples (TA-VAAL Fig. 7a)."""

from tavaal.report import plot_class_entropy, read_summary, save_figure
from tavaal.stage import workflow_job

# Set by the script preamble that Snakemake puts in front of this file.
snakemake = globals()["snakemake"]

with workflow_job(snakemake.log[0]) as log:
    save_figure(plot_class_entropy(read_summary(snakemake.input[0])), snakemake.output[0])
    log(f"wrote {snakemake.output[0]}")
