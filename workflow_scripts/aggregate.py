"""Rule aggregate: every metric row of one experiment -> summary.parquet."""

from tavaal.report import aggregate_experiment, write_summary
from tavaal.stage import workflow_job

# Set by the script preamble that Snakemake puts in front of this file.
snakemake = globals()["snakemake"]

with workflow_job(snakemake.log[0]) as log:
    summary = aggregate_experiment(
        snakemake.input.metrics,
        snakemake.input.labeled,
        snakemake.input.scores,
        snakemake.input.dataset,
        snakemake.params.metric_methods,
    )
    write_summary(summary, snakemake.output[0])
    log(f"{len(summary)} rows, columns: {', '.join(summary.columns)}")
