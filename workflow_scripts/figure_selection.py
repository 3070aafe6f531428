"""Rule figure_selection: two-moons points each method selected (TA-VAAL Fig. 1)."""

from tavaal.config import ExperimentConfig
from tavaal.report import save_figure, selection_figure
from tavaal.stage import workflow_job

# Set by the script preamble that Snakemake puts in front of this file.
snakemake = globals()["snakemake"]

with workflow_job(snakemake.log[0]) as log:
    settings = dict(snakemake.params.experiment)
    figure = selection_figure(
        ExperimentConfig.from_dict(settings.pop("name"), settings),
        snakemake.input.labeled,
        snakemake.input.models,
        snakemake.input.dataset,
        snakemake.params.stage,
        device=snakemake.config["device"],
    )
    save_figure(figure, snakemake.output[0])
    log(f"wrote {snakemake.output[0]}")
