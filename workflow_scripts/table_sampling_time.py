"""Rule table_sampling_time: seconds per query and method (VAAL Table 1)."""

from tavaal.report import read_summary, sampling_time_table, write_table
from tavaal.stage import workflow_job

# Set by the script preamble that Snakemake puts in front of this file.
snakemake = globals()["snakemake"]

with workflow_job(snakemake.log[0]) as log:
    table = sampling_time_table(read_summary(snakemake.input[0]))
    out = snakemake.output
    write_table(table, out.csv, out.md, out.html, title="Seconds per query")
    log(f"{len(table)} methods")
