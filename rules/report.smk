# Aggregation, figures and tables of one experiment. All cheap except the figures that run a
# task model (loss_vs_likelihood, selection), which stay small: one forward pass per method.
# Every figure and table also reads summary.parquet, so `--forcerun aggregate` redraws them all
# (e.g. after a change of tavaal/report/; see docs/workflow.md, "Rerun policy").


rule aggregate:
    input:
        unpack(aggregate_input),
    output:
        f"{EXP_DIR}/summary.parquet",
    log:
        "logs/{experiment}/aggregate.log",
    params:
        # The method of each metrics file (stage 0's are shared by the methods of a recipe).
        metric_methods=aggregate_metric_methods,
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        SOFTWARE
    script:
        "../workflow_scripts/aggregate.py"


rule figure_accuracy:
    input:
        summary_input,
    output:
        report(
            figure("accuracy"),
            caption="../report/accuracy.rst",
            category="{experiment}",
            subcategory="Learning curves",
            labels={"experiment": "{experiment}", "figure": "accuracy"},
        ),
    log:
        "logs/{experiment}/figures/accuracy.log",
    conda:
        SOFTWARE
    script:
        "../workflow_scripts/figure_accuracy.py"


rule figure_improvement:
    input:
        summary_input,
    output:
        report(
            figure("improvement"),
            caption="../report/improvement.rst",
            category="{experiment}",
            subcategory="Learning curves",
            labels={"experiment": "{experiment}", "figure": "improvement over baseline"},
        ),
    log:
        "logs/{experiment}/figures/improvement.log",
    params:
        baseline=REPORT["baseline"],
    conda:
        SOFTWARE
    script:
        "../workflow_scripts/figure_improvement.py"


rule figure_class_entropy:
    input:
        summary_input,
    output:
        report(
            figure("class_entropy"),
            caption="../report/class_entropy.rst",
            category="{experiment}",
            subcategory="Selected samples",
            labels={"experiment": "{experiment}", "figure": "class-count entropy"},
        ),
    log:
        "logs/{experiment}/figures/class_entropy.log",
    conda:
        SOFTWARE
    script:
        "../workflow_scripts/figure_class_entropy.py"


rule figure_discriminator_histogram:
    input:
        unpack(histogram_input),
    output:
        report(
            figure("discriminator_histogram"),
            caption="../report/discriminator_histogram.rst",
            category="{experiment}",
            subcategory="Adversarial part",
            labels={"experiment": "{experiment}", "figure": "discriminator outputs"},
        ),
    log:
        "logs/{experiment}/figures/discriminator_histogram.log",
    params:
        stage=last_query,
    conda:
        SOFTWARE
    script:
        "../workflow_scripts/figure_discriminator_histogram.py"


rule figure_loss_vs_likelihood:
    input:
        unpack(loss_likelihood_input),
    output:
        figure=report(
            figure("loss_vs_likelihood"),
            caption="../report/loss_vs_likelihood.rst",
            category="{experiment}",
            subcategory="Adversarial part",
            labels={"experiment": "{experiment}", "figure": "true loss vs likelihood"},
        ),
        # The figure's numbers (Spearman's rho per method), which the README results quote.
        csv=table("loss_vs_likelihood", "csv"),
        md=table("loss_vs_likelihood", "md"),
        html=report(
            table("loss_vs_likelihood", "html"),
            caption="../report/tables/loss_vs_likelihood.rst",
            category="{experiment}",
            subcategory="Tables",
            labels={"experiment": "{experiment}", "table": "loss_vs_likelihood"},
        ),
    log:
        "logs/{experiment}/figures/loss_vs_likelihood.log",
    params:
        experiment=experiment_params,
        seed=first_seed,
        stage=last_query,
    resources:
        mem_mb=8000,
        runtime=30,
    conda:
        SOFTWARE
    script:
        "../workflow_scripts/figure_loss_vs_likelihood.py"


rule figure_selection:
    input:
        unpack(selection_input),
    output:
        report(
            figure("selection"),
            caption="../report/selection.rst",
            category="{experiment}",
            subcategory="Selected samples",
            labels={"experiment": "{experiment}", "figure": "selected points"},
        ),
    log:
        "logs/{experiment}/figures/selection.log",
    params:
        experiment=experiment_params,
        seed=first_seed,
        stage=shown_selection_stage,
    conda:
        SOFTWARE
    script:
        "../workflow_scripts/figure_selection.py"


rule figure_adversary_map:
    """Issue 9: what the VAE + D of the shown query learned over the plane (retrained exactly
    from the query's files); only built through the `diagnostics` target."""
    input:
        unpack(adversary_map_input),
    output:
        figure("adversary_map"),
    log:
        "logs/{experiment}/figures/adversary_map.log",
    params:
        experiment=experiment_params,
        seed=first_seed,
        stage=shown_selection_stage,
    conda:
        SOFTWARE
    script:
        "../workflow_scripts/figure_adversary_map.py"


rule table_selection_geometry:
    """Issue 9: where each two-moons query's picks lie relative to the candidates (boundary
    margin, distance to each moon, density, spread); only built through `diagnostics`."""
    input:
        unpack(selection_geometry_input),
    output:
        csv=table("selection_geometry", "csv"),
        md=table("selection_geometry", "md"),
    log:
        "logs/{experiment}/tables/selection_geometry.log",
    params:
        experiment=experiment_params,
    conda:
        SOFTWARE
    script:
        "../workflow_scripts/table_selection_geometry.py"


rule tables:
    input:
        summary_input,
    output:
        # The html pages are what `snakemake --report` shows (csv only as downloads).
        accuracy_csv=table("accuracy", "csv"),
        accuracy_md=table("accuracy", "md"),
        accuracy_html=report(
            table("accuracy", "html"),
            caption="../report/tables/accuracy.rst",
            category="{experiment}",
            subcategory="Tables",
            labels={"experiment": "{experiment}", "table": "accuracy"},
        ),
        aulc_csv=table("aulc", "csv"),
        aulc_md=table("aulc", "md"),
        aulc_html=report(
            table("aulc", "html"),
            caption="../report/tables/aulc.rst",
            category="{experiment}",
            subcategory="Tables",
            labels={"experiment": "{experiment}", "table": "aulc"},
        ),
        reach_csv=table("labels_to_reach", "csv"),
        reach_md=table("labels_to_reach", "md"),
        reach_html=report(
            table("labels_to_reach", "html"),
            caption="../report/tables/labels_to_reach.rst",
            category="{experiment}",
            subcategory="Tables",
            labels={"experiment": "{experiment}", "table": "labels_to_reach"},
        ),
    log:
        "logs/{experiment}/tables/tables.log",
    params:
        baseline=REPORT["baseline"],
        targets=REPORT["accuracy_targets"],
        confidence=REPORT["confidence"],
    conda:
        SOFTWARE
    script:
        "../workflow_scripts/tables.py"


rule table_sampling_time:
    input:
        summary_input,
    output:
        csv=table("sampling_time", "csv"),
        md=table("sampling_time", "md"),
        html=report(
            table("sampling_time", "html"),
            caption="../report/tables/sampling_time.rst",
            category="{experiment}",
            subcategory="Tables",
            labels={"experiment": "{experiment}", "table": "sampling_time"},
        ),
    log:
        "logs/{experiment}/tables/sampling_time.log",
    conda:
        SOFTWARE
    script:
        "../workflow_scripts/table_sampling_time.py"


rule table_adversarial_health:
    input:
        summary_input,
    output:
        csv=table("adversarial_health", "csv"),
        md=table("adversarial_health", "md"),
        html=report(
            table("adversarial_health", "html"),
            caption="../report/tables/adversarial_health.rst",
            category="{experiment}",
            subcategory="Tables",
            labels={"experiment": "{experiment}", "table": "adversarial_health"},
        ),
    log:
        "logs/{experiment}/tables/adversarial_health.log",
    conda:
        SOFTWARE
    script:
        "../workflow_scripts/table_adversarial_health.py"


rule table_oracle_errors:
    """VAAL §5.2: wrong labels of a noisy oracle in each method's labeled sets (experiments with
    oracle.noise > 0 only)."""
    input:
        summary_input,
    output:
        csv=table("oracle_errors", "csv"),
        md=table("oracle_errors", "md"),
        html=report(
            table("oracle_errors", "html"),
            caption="../report/tables/oracle_errors.rst",
            category="{experiment}",
            subcategory="Tables",
            labels={"experiment": "{experiment}", "table": "oracle_errors"},
        ),
    log:
        "logs/{experiment}/tables/oracle_errors.log",
    params:
        noise=oracle_noise,
    conda:
        SOFTWARE
    script:
        "../workflow_scripts/table_oracle_errors.py"


rule study:
    """One setting changed at a time (studies.<name>): AULC minus random per variant and method,
    paired by seed, the adversarial part's health, and every experiment's learning curves
    (tavaal.report.study)."""
    input:
        study_input,
    output:
        figure=report(
            study_file("aulc.png"),
            caption="../report/study.rst",
            category="Studies",
            labels={"study": "{study}", "figure": "AULC minus random"},
        ),
        curves=report(
            study_file("curves.png"),
            caption="../report/study_curves.rst",
            category="Studies",
            labels={"study": "{study}", "figure": "learning curves"},
        ),
        csv=study_file("table.csv"),
        md=study_file("table.md"),
        html=report(
            study_file("table.html"),
            caption="../report/study.rst",
            category="Studies",
            labels={"study": "{study}", "table": "variants"},
        ),
    log:
        "logs/studies/{study}.log",
    params:
        experiments=study_experiments,
        baseline=REPORT["baseline"],
        confidence=REPORT["confidence"],
    conda:
        SOFTWARE
    script:
        "../workflow_scripts/study.py"


rule readme_results:
    """The generated results section for the experiments of this run (docs/results/), or for its
    studies when it has some: `tavaal readme-update docs/results/PAGE.md
    results/readme_results.md --name NAME` puts it between that page's NAME markers."""
    input:
        studies=[study_file("table.csv").format(study=name) for name in STUDIES],
        summaries=expand(f"{EXP_DIR}/summary.parquet", experiment=list(EXPERIMENTS)),
        # Spearman's rho of the true loss vs likelihood, from the figure that computes it.
        loss_likelihood=[
            table("loss_vs_likelihood", "csv").format(experiment=name)
            for name in EXPERIMENTS
            if has_queries(name) and adversarial_methods(name)
        ],
    output:
        f"{RESULTS}/readme_results.md",
    log:
        "logs/readme_results.log",
    params:
        baseline=REPORT["baseline"],
        confidence=REPORT["confidence"],
        # A study's run shows its study; its experiments are shown by their own runs.
        experiments=not STUDIES,
    conda:
        SOFTWARE
    script:
        "../workflow_scripts/readme_results.py"


# ------------------------------------------------ ablations and robustness (issue 10)
# Plain retraining (TA-VAAL §6.1), opt-in through the target plain_retraining: a plain
# classifier on the labeled sets of every method whose own learner is not plain, no new query.


rule retrain_plain:
    """A plain classifier on a method's labeled set of stage k >= 1 (stage 0 uses the shared
    stage-0 plain model of train_initial); the recipe wildcard is only ever `plain`."""
    input:
        unpack(train_input),
    output:
        model=stage_file("{stage}", "{recipe}/model.pt"),
        metrics=stage_file("{stage}", "{recipe}/metrics.json"),
    log:
        stage_log("{stage}", "{recipe}/train"),
    benchmark:
        stage_benchmark("{stage}", "{recipe}/train")
    params:
        # The recipe wildcard makes these, and the resources, the plain recipe's.
        settings=recipe_training_settings,
        code_version=CODE_VERSION,
    wildcard_constraints:
        stage=r"[1-9]\d*",
        recipe=PLAIN.name,
    threads: training_threads
    resources:
        mem_mb=train_mem_mb,
        runtime=train_runtime,
        gpu=train_gpus,
    conda:
        SOFTWARE
    script:
        "../workflow_scripts/retrain_plain.py"


rule table_plain_retraining:
    input:
        unpack(plain_retraining_input),
    output:
        csv=table("plain_retraining", "csv"),
        md=table("plain_retraining", "md"),
        html=report(
            table("plain_retraining", "html"),
            caption="../report/tables/plain_retraining.rst",
            category="{experiment}",
            subcategory="Tables",
            labels={"experiment": "{experiment}", "table": "plain_retraining"},
        ),
        figure=report(
            figure("plain_retraining"),
            caption="../report/plain_retraining.rst",
            category="{experiment}",
            subcategory="Learning curves",
            labels={"experiment": "{experiment}", "figure": "plain retraining"},
        ),
    log:
        "logs/{experiment}/tables/plain_retraining.log",
    params:
        methods=plain_retraining_methods,
        reference=plain_retraining_reference,
    conda:
        SOFTWARE
    script:
        "../workflow_scripts/table_plain_retraining.py"
