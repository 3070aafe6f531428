"""Rule figure_adversary_map: what the VAE + D of the shown two-moons query learned (issue 9)."""

from tavaal.config import ExperimentConfig
from tavaal.report import adversary_map_figure, save_figure
from tavaal.stage import workflow_job

# Set by the script preamble that Snakemake puts in front of this file.
snakemake = globals()["snakemake"]

with workflow_job(snakemake.log[0]) as log:
    settings = dict(snakemake.params.experiment)
    figure = adversary_map_figure(
        ExperimentConfig.from_dict(settings.pop("name"), settings),
        snakemake.input.labeled,
        snakemake.input.scores,
        snakemake.input.models,
        snakemake.input.dataset,
        snakemake.params.seed,
        snakemake.params.stage,
        device=snakemake.config["device"],
        log=log,
    )
    save_figure(figure, snakemake.output[0])
    log(f"wrote {snakemake.output[0]}")
