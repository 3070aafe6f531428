"""Rule readme_results: the README's results section for the experiments of this run."""

from pathlib import Path

from tavaal.report.readme import results_section
from tavaal.stage import workflow_job

# Set by the script preamble that Snakemake puts in front of this file.
snakemake = globals()["snakemake"]

with workflow_job(snakemake.log[0]) as log:
    text = results_section(
        snakemake.input.summaries,
        snakemake.input.loss_likelihood,
        snakemake.params.baseline,
        snakemake.params.confidence,
        study_paths=snakemake.input.studies,
        experiments=snakemake.params.experiments,
    )
    Path(snakemake.output[0]).write_text(text)
    log(f"wrote {snakemake.output[0]}; put it in its docs page with `tavaal readme-update`")
