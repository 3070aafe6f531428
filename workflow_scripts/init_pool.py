"""Rule init_pool: stage0/labeled.parquet, the same samples for every method of a seed."""

from pathlib import Path

from tavaal.config import ExperimentConfig
from tavaal.stage import job_logger, run_init_pool

# Set by the script preamble that Snakemake puts in front of this file.
snakemake = globals()["snakemake"]

with job_logger(snakemake.log[0]) as log:
    wildcards = snakemake.wildcards
    run_init_pool(
        ExperimentConfig.from_dict(wildcards.experiment, snakemake.params.settings),
        wildcards.method,
        int(wildcards.seed),
        data_dir=Path(snakemake.input.dataset).parent,
        labeled_out=Path(snakemake.output.labeled),
        log=log,
    )
