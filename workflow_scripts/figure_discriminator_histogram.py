"""Rule figure_discriminator_histogram: D outputs at the last query (TA-VAAL Fig. 7b)."""

from tavaal.report import discriminator_histogram_figure, save_figure
from tavaal.stage import workflow_job

# Set by the script preamble that Snakemake puts in front of this file.
snakemake = globals()["snakemake"]

with workflow_job(snakemake.log[0]) as log:
    figure = discriminator_histogram_figure(snakemake.input.scores, snakemake.params.stage)
    save_figure(figure, snakemake.output[0])
    log(f"wrote {snakemake.output[0]}")
