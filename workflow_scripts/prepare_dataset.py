"""Rule prepare_dataset: write data_dir/<dataset>/ in the canonical on-disk form."""

from pathlib import Path

from tavaal.data import prepare_dataset
from tavaal.stage import workflow_job

# Set by the script preamble that Snakemake puts in front of this file.
snakemake = globals()["snakemake"]

with workflow_job(snakemake.log[0]) as log:
    folder = Path(snakemake.output[0])
    prepare_dataset(
        snakemake.wildcards.dataset,
        folder.parent,
        download=snakemake.config["download"],
        raw_sources=snakemake.config["raw_sources"],
    )
    log(f"prepared {folder}")
