"""Rule table_adversarial_health: VAE/discriminator diagnostics of every query."""

from tavaal.report import adversarial_health_table, read_summary, write_table
from tavaal.stage import workflow_job

# Set by the script preamble that Snakemake puts in front of this file.
snakemake = globals()["snakemake"]

with workflow_job(snakemake.log[0]) as log:
    table = adversarial_health_table(read_summary(snakemake.input[0]))
    write_table(
        table,
        snakemake.output.csv,
        snakemake.output.md,
        snakemake.output.html,
        title="Health of the adversarial part (mean over seeds)",
    )
    log(f"{len(table)} (method, stage) rows")
