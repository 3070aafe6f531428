# Datasets: generated (moons), shipped with scikit-learn (digits), downloaded (torchvision) or
# read in place from the folders of config["raw_sources"], always stored in one canonical form
# under data_dir/<dataset>/ (tavaal.data.prepare_dataset). The raw folder is not a param: every
# file read is md5-checked, so another folder with the same files gives the same dataset.


rule prepare_dataset:
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
