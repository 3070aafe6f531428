"""Rule init_pool: the initial labeled pool of one (experiment, seed), shared by every method."""

from pathlib import Path

from tavaal.config import experiment_from_config
from tavaal.stage import run_init_pool, workflow_job

# Set by the script preamble that Snakemake puts in front of this file.
snakemake = globals()["snakemake"]

with workflow_job(snakemake.log[0]) as log:
    wildcards = snakemake.wildcards
    run_init_pool(
        experiment_from_config(snakemake.config, wildcards.experiment),
        int(wildcards.seed),
        data_dir=Path(snakemake.input.dataset).parent,
        labeled_out=Path(snakemake.output.labeled),
        log=log,
    )
