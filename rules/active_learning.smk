# The active-learning loop as file targets:
#   init_pool          -> stage0/labeled.parquet
#   train (stage k)    : stage{k}/labeled.parquet -> stage{k}/model.pt, stage{k}/metrics.json
#   query_stage{k}     : stage{k}/labeled.parquet (+ stage{k}/model.pt if the method reads the
#                        task model) -> stage{k+1}/labeled.parquet, stage{k}/scores.parquet
# A Snakemake rule's outputs must all carry the same wildcards, and a query writes into two
# stage folders (k and k+1), so the query is one rule per stage index, defined in a loop below;
# its inputs come from the named input function query_input(k) in common.smk.


rule init_pool:
    input:
        dataset=dataset_input,
    output:
        labeled=stage_file(0, "labeled.parquet"),
    log:
        stage_log(0, "init_pool"),
    params:
        settings=job_settings,
        code_version=CODE_VERSION,
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        SOFTWARE
    script:
        "../workflow_scripts/init_pool.py"


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
        settings=job_settings,
        code_version=CODE_VERSION,
    threads: 1
    resources:
        mem_mb=train_mem_mb,
        runtime=train_runtime,
        gpu=1,
    conda:
        SOFTWARE
    script:
        "../workflow_scripts/train.py"


for _stage in range(QUERY_STAGES):

    rule:
        name:
            f"query_stage{_stage}"
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
            settings=job_settings,
            code_version=CODE_VERSION,
        threads: 1
        resources:
            mem_mb=query_mem_mb,
            runtime=query_runtime(_stage),
            gpu=1,
        conda:
            SOFTWARE
        script:
            "../workflow_scripts/query.py"
