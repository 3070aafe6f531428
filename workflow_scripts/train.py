"""Rules train_initial and train: one stage's task learner -> model.pt, metrics.json.

train_initial trains a recipe's shared stage-0 model (wildcard `recipe`); train trains a
method's model of a later stage (wildcards `method` and `stage`).
"""

from pathlib import Path

from tavaal.config import experiment_from_config
from tavaal.stage import run_train, workflow_job
from tavaal.strategies import strategy_class
from tavaal.training import get_recipe

# Set by the script preamble that Snakemake puts in front of this file.
snakemake = globals()["snakemake"]

with workflow_job(snakemake.log[0], threads=snakemake.threads) as log:
    wildcards = snakemake.wildcards
    shared = "recipe" in wildcards.keys()
    run_train(
        experiment_from_config(snakemake.config, wildcards.experiment),
        get_recipe(wildcards.recipe) if shared else strategy_class(wildcards.method).recipe,
        int(wildcards.seed),
        0 if shared else int(wildcards.stage),
        labeled=Path(snakemake.input.labeled),
        data_dir=Path(snakemake.input.dataset).parent,
        model_out=Path(snakemake.output.model),
        metrics_out=Path(snakemake.output.metrics),
        method=None if shared else wildcards.method,
        device=snakemake.config["device"],
        log=log,
        threads=snakemake.threads,
    )
