"""Rule table_oracle_errors: wrong labels a noisy oracle gave each method (VAAL §5.2)."""

from tavaal.report import oracle_errors_table, read_summary, write_table
from tavaal.stage import workflow_job

# Set by the script preamble that Snakemake puts in front of this file.
snakemake = globals()["snakemake"]

with workflow_job(snakemake.log[0]) as log:
    noise = snakemake.params.noise
    table = oracle_errors_table(read_summary(snakemake.input[0]), noise)
    out = snakemake.output
    title = f"Wrong labels from the oracle (noise {noise:g})"
    write_table(table, out.csv, out.md, out.html, title=title)
    log(f"{len(table)} (method, stage) rows")
