# The active-learning loop as file targets:
#   init_pool          -> stage0/seed{s}/labeled.parquet            (one per experiment and seed)
#   train_initial      : that pool -> stage0/seed{s}/{recipe}/model.pt, metrics.json
#                        (one per training recipe: methods that train alike share it)
#   train (stage k>=1) : {method}/seed{s}/stage{k}/labeled.parquet -> model.pt, metrics.json
#   query_stage{k}     : stage k's labeled set (+ stage k's model if the method reads the task
#                        model) -> {method}/seed{s}/stage{k+1}/labeled.parquet,
#                        {method}/seed{s}/stage{k}/scores.parquet
# A Snakemake rule's outputs must all carry the same wildcards, and a query writes into two
# stage folders (k and k+1), so the query is one rule per stage index, defined in a loop below;
# its inputs come from the named input function query_input(k) in common.smk.


rule init_pool:
    wildcard_constraints:
        # A person labels the initial pool of human-oracle experiments (rules/practitioner.smk).
        experiment=_only(SIMULATED),
    input:
        dataset=dataset_input,
    output:
        labeled=stage0_file("labeled.parquet"),
    log:
        f"{STAGE0_LOGS}/init_pool.log",
    params:
        settings=pool_settings,
        code_version=CODE_VERSION,
    threads: 1
    resources:
        # Index arithmetic on the memory-mapped labels, no torch: 0.14 GB on Fashion-MNIST.
        mem_mb=500,
        runtime=10,
    conda:
        SOFTWARE
    script:
        "../workflow_scripts/init_pool.py"


rule train_initial:
    input:
        unpack(train_initial_input),
    output:
        model=stage0_file("model.pt"),
        metrics=stage0_file("metrics.json"),
    log:
        f"{STAGE0_LOGS}/{{recipe}}/train.log",
    benchmark:
        f"{STAGE0_BENCH}/{{recipe}}/train.tsv"
    params:
        settings=recipe_training_settings,
        code_version=CODE_VERSION,
    threads: training_threads
    resources:
        mem_mb=train_mem_mb,
        runtime=train_runtime,
        gpu=train_gpus,
    conda:
        SOFTWARE
    script:
        "../workflow_scripts/train.py"


rule train:
    input:
        unpack(train_input),
    output:
        model=stage_file("{stage}", "model.pt"),
        metrics=stage_file("{stage}", "metrics.json"),
    log:
        stage_log("{stage}", "train"),
    benchmark:
        stage_benchmark("{stage}", "train")
    params:
        settings=recipe_training_settings,
        code_version=CODE_VERSION,
    wildcard_constraints:
        # Stage 0 is train_initial's.
        stage=r"[1-9]\d*",
    threads: training_threads
    resources:
        mem_mb=train_mem_mb,
        runtime=train_runtime,
        gpu=train_gpus,
    conda:
        SOFTWARE
    script:
        "../workflow_scripts/train.py"


for _stage in range(QUERY_STAGES):

    rule:
        name:
            f"query_stage{_stage}"
        wildcard_constraints:
            # Human-oracle experiments query with query_request_stage<k> instead.
            experiment=_only(SIMULATED),
        input:
            unpack(query_input(_stage)),
        output:
            labeled=stage_file(_stage + 1, "labeled.parquet"),
            scores=stage_file(_stage, "scores.parquet"),
        log:
            stage_log(_stage, "query"),
        benchmark:
            stage_benchmark(_stage, "query")
        params:
            stage=_stage,
            settings=query_settings,
            code_version=CODE_VERSION,
        threads: dataset_threads
        resources:
            mem_mb=query_mem_mb(_stage),
            runtime=query_runtime(_stage),
            gpu=1,
        conda:
            SOFTWARE
        script:
            "../workflow_scripts/query.py"
