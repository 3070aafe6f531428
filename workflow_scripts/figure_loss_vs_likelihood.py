"""Rule figure_loss_vs_likelihood: true loss vs likelihood of being unlabeled (TA-VAAL Fig. 8)."""

from tavaal.config import ExperimentConfig
from tavaal.report import loss_vs_likelihood_figure, save_figure
from tavaal.stage import job_logger

# Set by the script preamble that Snakemake puts in front of this file.
snakemake = globals()["snakemake"]

with job_logger(snakemake.log[0]) as log:
    settings = dict(snakemake.params.experiment)
    figure = loss_vs_likelihood_figure(
        ExperimentConfig.from_dict(settings.pop("name"), settings),
        snakemake.input.scores,
        snakemake.input.models,
        snakemake.input.dataset,
        snakemake.params.stage,
        device=snakemake.config["device"],
    )
    save_figure(figure, snakemake.output[0])
    log(f"wrote {snakemake.output[0]}")
