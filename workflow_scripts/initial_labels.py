"""Rule initial_labels: the labels a person already has (oracle.initial_labels) -> stage 0."""

from pathlib import Path

from tavaal.config import experiment_from_config
from tavaal.practitioner import run_initial_labels
from tavaal.stage import workflow_job

# Set by the script preamble that Snakemake puts in front of this file.
snakemake = globals()["snakemake"]

with workflow_job(snakemake.log[0]) as log:
    run_initial_labels(
        experiment_from_config(snakemake.config, snakemake.wildcards.experiment),
        int(snakemake.wildcards.seed),
        data_dir=Path(snakemake.input.dataset).parent,
        initial_labels=Path(snakemake.input.labels),
        labeled_out=Path(snakemake.output.labeled),
        log=log,
    )
