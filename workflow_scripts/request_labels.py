"""Rules request_initial_labels and query_request_stage<k>: ask a person for labels.

request_initial_labels draws the initial pool; query_request_stage<k> queries stage k (params
stage) and asks for the picks. Both write to_label.csv, label_request.json, contact_sheet.png.
"""

from pathlib import Path

from tavaal.config import experiment_from_config
from tavaal.practitioner import run_initial_request, run_query_request
from tavaal.stage import workflow_job

# Set by the script preamble that Snakemake puts in front of this file.
snakemake = globals()["snakemake"]

with workflow_job(snakemake.log[0], threads=snakemake.threads) as log:
    wildcards = snakemake.wildcards
    exp = experiment_from_config(snakemake.config, wildcards.experiment)
    folder = Path(snakemake.output.to_label).parent
    data_dir = Path(snakemake.input.dataset).parent
    if "stage" not in snakemake.params.keys():
        run_initial_request(exp, int(wildcards.seed), data_dir, folder, log=log)
    else:
        # Only methods that read the task model have the stage's model.pt among their inputs.
        model = snakemake.input.get("model")
        run_query_request(
            exp,
            wildcards.method,
            int(wildcards.seed),
            int(snakemake.params.stage),
            labeled=Path(snakemake.input.labeled),
            model=Path(model) if model else None,
            data_dir=data_dir,
            scores_out=Path(snakemake.output.scores),
            folder=folder,
            device=snakemake.config["device"],
            log=log,
        )
