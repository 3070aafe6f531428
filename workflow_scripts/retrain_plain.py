"""Rule retrain_plain: a plain classifier on one method's labeled set of stage k >= 1, no query
(TA-VAAL §6.1) -> {method}/seed{s}/stage{k}/plain/model.pt, metrics.json."""

from pathlib import Path

from tavaal.config import experiment_from_config
from tavaal.stage import run_train, workflow_job
from tavaal.training import get_recipe

# Set by the script preamble that Snakemake puts in front of this file.
snakemake = globals()["snakemake"]

with workflow_job(snakemake.log[0], threads=snakemake.threads) as log:
    wildcards = snakemake.wildcards
    run_train(
        experiment_from_config(snakemake.config, wildcards.experiment),
        get_recipe(wildcards.recipe),
        int(wildcards.seed),
        int(wildcards.stage),
        labeled=Path(snakemake.input.labeled),
        data_dir=Path(snakemake.input.dataset).parent,
        model_out=Path(snakemake.output.model),
        metrics_out=Path(snakemake.output.metrics),
        method=wildcards.method,
        device=snakemake.config["device"],
        log=log,
        threads=snakemake.threads,
    )
