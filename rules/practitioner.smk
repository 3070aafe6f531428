# Practitioner mode: experiments with oracle kind human (docs/labeling.md, "Label your own images").
# A person answers, so each labeling is a request the workflow writes, a labels file the person
# fills (outside results/), and a job that takes it:
#   request_initial_labels : dataset -> stage0/seed{s}/to_label.csv, label_request.json,
#                            contact_sheet.png          (unless oracle.initial_labels is given)
#   take_initial_labels    : that request + <labels_dir>/.../labels.csv -> stage0 labeled.parquet
#   initial_labels         : oracle.initial_labels (path,label) -> stage0 labeled.parquet
#   query_request_stage{k} : as query_stage{k}, but the picks go to a request of stage k+1
#   take_labels            : stage k's request + its labels file + stage k-1's labeled set and
#                            scores -> stage k's labeled.parquet (k >= 1)
#   export_labels          : a stage's labeled set as CSV (path, label, stage, score) + its model
# Training is the same rules as for a simulated oracle. The targets stop at the first stage
# whose labels are missing (tavaal.workflow_plan, human_targets); the run ends by saying what to
# label.


rule request_initial_labels:
    wildcard_constraints:
        experiment=_only(HUMAN_ASKED_POOL),
    input:
        dataset=dataset_input,
    output:
        to_label=f"{STAGE0}/to_label.csv",
        request=f"{STAGE0}/label_request.json",
        sheet=f"{STAGE0}/contact_sheet.png",
    log:
        f"{STAGE0_LOGS}/request_labels.log",
    params:
        settings=pool_settings,
        code_version=CODE_VERSION,
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        SOFTWARE
    script:
        "../workflow_scripts/request_labels.py"


rule take_initial_labels:
    wildcard_constraints:
        experiment=_only(HUMAN_ASKED_POOL),
    input:
        request=f"{STAGE0}/label_request.json",
        to_label=f"{STAGE0}/to_label.csv",
        labels=labels_input,
    output:
        labeled=stage0_file("labeled.parquet"),
    log:
        f"{STAGE0_LOGS}/take_labels.log",
    params:
        settings=pool_settings,
        code_version=CODE_VERSION,
    threads: 1
    resources:
        mem_mb=500,
        runtime=10,
    conda:
        SOFTWARE
    script:
        "../workflow_scripts/take_labels.py"


rule initial_labels:
    wildcard_constraints:
        experiment=_only(HUMAN_GIVEN_POOL),
    input:
        unpack(initial_labels_input),
    output:
        labeled=stage0_file("labeled.parquet"),
    log:
        f"{STAGE0_LOGS}/initial_labels.log",
    params:
        settings=pool_settings,
        code_version=CODE_VERSION,
    threads: 1
    resources:
        mem_mb=500,
        runtime=10,
    conda:
        SOFTWARE
    script:
        "../workflow_scripts/initial_labels.py"


for _stage in range(QUERY_STAGES):

    rule:
        name:
            f"query_request_stage{_stage}"
        wildcard_constraints:
            experiment=_only(HUMAN),
        input:
            unpack(query_input(_stage)),
        output:
            to_label=stage_file(_stage + 1, "to_label.csv"),
            request=stage_file(_stage + 1, "label_request.json"),
            sheet=stage_file(_stage + 1, "contact_sheet.png"),
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
            "../workflow_scripts/request_labels.py"


rule take_labels:
    wildcard_constraints:
        experiment=_only(HUMAN),
        stage=r"[1-9]\d*",
    input:
        unpack(take_labels_input),
    output:
        labeled=stage_file("{stage}", "labeled.parquet"),
    log:
        stage_log("{stage}", "take_labels"),
    params:
        settings=query_settings,
        code_version=CODE_VERSION,
    threads: 1
    resources:
        mem_mb=500,
        runtime=10,
    conda:
        SOFTWARE
    script:
        "../workflow_scripts/take_labels.py"


rule export_labels:
    """A stage's labeled set as labeled.csv (sample_id, path, label, stage, score) and its
    trained model (model.pt), for any experiment; human-oracle runs export their last labeled
    stage by default."""
    input:
        unpack(export_input),
    output:
        labeled=f"{EXPORT}/labeled.csv",
        model=f"{EXPORT}/model.pt",
    log:
        f"{RUN_LOGS}/export/stage{{stage}}.log",
    threads: 1
    resources:
        mem_mb=500,
        runtime=10,
    conda:
        SOFTWARE
    script:
        "../workflow_scripts/export_labels.py"
