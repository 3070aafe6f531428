"""Rule train: the task learner of one stage -> model.pt, metrics.json."""

from pathlib import Path

from tavaal.config import ExperimentConfig
from tavaal.stage import job_logger, run_train

# Set by the script preamble that Snakemake puts in front of this file.
snakemake = globals()["snakemake"]

with job_logger(snakemake.log[0]) as log:
    wildcards = snakemake.wildcards
    run_train(
        ExperimentConfig.from_dict(wildcards.experiment, snakemake.params.settings),
        wildcards.method,
        int(wildcards.seed),
        int(wildcards.stage),
        labeled=Path(snakemake.input.labeled),
        data_dir=Path(snakemake.input.dataset).parent,
        model_out=Path(snakemake.output.model),
        metrics_out=Path(snakemake.output.metrics),
        device=snakemake.config["device"],
        log=log,
    )
