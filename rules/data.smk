# Datasets: generated (moons), shipped with scikit-learn (digits), downloaded (torchvision) or
# read in place from the folders of config["raw_sources"], always stored in one canonical form
# under data_dir/<dataset>/ (tavaal.data.prepare_dataset). The raw folder is not a param: every
# file read is md5-checked, so another folder with the same files gives the same dataset.


rule prepare_dataset:
    wildcard_constraints:
        dataset=_only(d for d in (e.dataset for e in EXPERIMENTS.values()) if d not in IMAGE_FOLDERS),
    output:
        # The folder is written atomically by the library (staging folder, then rename).
        directory(f"{DATA}/{{dataset}}"),
    log:
        "logs/data/{dataset}.log",
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        SOFTWARE
    script:
        "../workflow_scripts/prepare_dataset.py"


rule prepare_image_folder:
    """A practitioner's folder of images (image_folders.<name>), decoded at its image_size."""
    wildcard_constraints:
        dataset=_only(IMAGE_FOLDERS),
    output:
        directory(f"{DATA}/{{dataset}}"),
    log:
        "logs/data/{dataset}.log",
    params:
        # A changed entry (size, labels, test split) or folder (the digest of its listing)
        # prepares it again; the workflow refuses that first where finished results use it
        # (tavaal.workflow_plan, checked before any job).
        folder=lambda wildcards: image_folder_state(wildcards.dataset).prepare_params(),
    threads: 1
    resources:
        # One decoded image at a time; the arrays: N x image_size^2 x 3 bytes.
        mem_mb=lambda wildcards: 1000 + image_folder_mb(wildcards.dataset),
        runtime=60,
    conda:
        SOFTWARE
    script:
        "../workflow_scripts/prepare_image_folder.py"
