"""Rule prepare_image_folder: decode image_folders.<name> into data_dir/<name>/."""

from pathlib import Path

from tavaal.data import declare_image_folders, prepare_dataset
from tavaal.stage import workflow_job

# Set by the script preamble that Snakemake puts in front of this file.
snakemake = globals()["snakemake"]

with workflow_job(snakemake.log[0]) as log:
    folder = Path(snakemake.output[0])
    name = snakemake.wildcards.dataset
    declare_image_folders({name: snakemake.config["image_folders"][name]})
    prepare_dataset(name, folder.parent, log=log)
    log(f"prepared {folder}")
