"""Rule table_selection_geometry: where the two-moons picks lie (issue 9). csv: one row per
query; md: the mean per method over seeds and queries."""

from pathlib import Path

from tavaal.adversary_replay import query_picks_from_files
from tavaal.config import ExperimentConfig
from tavaal.report import markdown_table, selection_geometry, summarise_geometry
from tavaal.stage import workflow_job

# Set by the script preamble that Snakemake puts in front of this file.
snakemake = globals()["snakemake"]

with workflow_job(snakemake.log[0]) as log:
    settings = dict(snakemake.params.experiment)
    dataset, picks = query_picks_from_files(
        ExperimentConfig.from_dict(settings.pop("name"), settings),
        snakemake.input.scores,
        snakemake.input.labeled,
        snakemake.input.models,
        snakemake.input.dataset,
        device=snakemake.config["device"],
    )
    table = selection_geometry(dataset.x_train, dataset.y_train, picks)
    Path(snakemake.output.csv).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(snakemake.output.csv, index=False, float_format="%.6g")
    Path(snakemake.output.md).write_text(
        "## Where the picks lie (mean per method over seeds and queries)\n\n"
        + markdown_table(summarise_geometry(table).round(3))
    )
    log(f"{len(table)} queries")
