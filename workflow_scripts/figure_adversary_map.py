"""Rule figure_adversary_map: what the VAE + D of the shown two-moons query learned (issue 9)."""

from tavaal.adversary_replay import replay_adversary_maps
from tavaal.config import ExperimentConfig
from tavaal.report import plot_adversary_map, save_figure
from tavaal.stage import workflow_job

# Set by the script preamble that Snakemake puts in front of this file.
snakemake = globals()["snakemake"]

with workflow_job(snakemake.log[0]) as log:
    settings = dict(snakemake.params.experiment)
    dataset, maps = replay_adversary_maps(
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
    save_figure(plot_adversary_map(dataset.x_train, dataset.y_train, maps), snakemake.output[0])
    log(f"wrote {snakemake.output[0]}")
