"""Rule export_labels: a stage's labeled set as CSV (path, label, stage, score) and its model."""

from pathlib import Path

from tavaal.config import experiment_from_config
from tavaal.practitioner import run_export
from tavaal.stage import workflow_job

# Set by the script preamble that Snakemake puts in front of this file.
snakemake = globals()["snakemake"]

with workflow_job(snakemake.log[0]) as log:
    wildcards = snakemake.wildcards
    run_export(
        experiment_from_config(snakemake.config, wildcards.experiment),
        wildcards.method,
        int(wildcards.seed),
        int(wildcards.stage),
        labeled=Path(snakemake.input.labeled),
        model=Path(snakemake.input.model),
        data_dir=Path(snakemake.input.dataset).parent,
        out_dir=Path(snakemake.output.labeled).parent,
        log=log,
    )
