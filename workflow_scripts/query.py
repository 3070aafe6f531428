"""Rules query_stage<k>: score candidates, label `budget` of them -> stage k+1 labeled set."""

from pathlib import Path

from tavaal.config import experiment_from_config
from tavaal.stage import run_query, workflow_job

# Set by the script preamble that Snakemake puts in front of this file.
snakemake = globals()["snakemake"]

with workflow_job(snakemake.log[0], threads=snakemake.threads) as log:
    wildcards = snakemake.wildcards
    # Only methods that read the task model have the stage's model.pt among their inputs.
    model = snakemake.input.get("model")
    run_query(
        experiment_from_config(snakemake.config, wildcards.experiment),
        wildcards.method,
        int(wildcards.seed),
        int(snakemake.params.stage),
        labeled=Path(snakemake.input.labeled),
        model=Path(model) if model else None,
        data_dir=Path(snakemake.input.dataset).parent,
        labeled_out=Path(snakemake.output.labeled),
        scores_out=Path(snakemake.output.scores),
        device=snakemake.config["device"],
        log=log,
    )
