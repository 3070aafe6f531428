"""Rules take_initial_labels and take_labels: a person's labels file -> the stage's labeled set."""

from pathlib import Path

from tavaal.config import experiment_from_config
from tavaal.practitioner import run_take_labels
from tavaal.stage import workflow_job

# Set by the script preamble that Snakemake puts in front of this file.
snakemake = globals()["snakemake"]

with workflow_job(snakemake.log[0]) as log:
    wildcards = snakemake.wildcards
    later = "stage" in wildcards.keys()
    run_take_labels(
        experiment_from_config(snakemake.config, wildcards.experiment),
        int(wildcards.seed),
        int(wildcards.stage) if later else 0,
        wildcards.method if later else None,
        request=Path(snakemake.input.request),
        labeled_out=Path(snakemake.output.labeled),
        previous=Path(snakemake.input.previous) if later else None,
        scores=Path(snakemake.input.scores) if later else None,
        log=log,
    )
