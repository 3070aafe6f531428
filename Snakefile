# tavaal experiment workflow: every (experiment, method, seed, stage) is a file target.
#   snakemake --cores 2                 # = all_figures: the default config.yaml, offline
#   snakemake --cores 2 all             # metrics only
#   snakemake --configfile presets/tavaal_cifar10.yaml --profile profiles/slurm
# Layout, rerun policy and presets: docs/workflow.md.

from snakemake.utils import min_version, validate

min_version("9.20")


configfile: "config.yaml"


# Fills the schema's defaults (generated from tavaal/config.py: `tavaal schema --write`) and stops
# on any unknown key or bad value before a job starts.
validate(config, "schemas/config.schema.yaml")


include: "rules/common.smk"


report: "report/workflow.rst"


rule all_figures:
    """Every figure and table of every selected experiment (the default target)."""
    default_target: True
    input:
        all_figures(),


rule all:
    """Every metrics.json: all trainings of all stages, no figures."""
    input:
        all_metrics(),


rule diagnostics:
    """Opt-in two-moons diagnostics (issue 9): selection geometry and adversary map."""
    input:
        diagnostic_files(),


rule plain_retraining:
    """Opt-in ablation (TA-VAAL §6.1, issue 10): per experiment, each non-plain method's own
    task learner against a plain classifier retrained on its labeled sets, without new queries."""
    input:
        plain_retraining_files(),


include: "rules/data.smk"
include: "rules/active_learning.smk"
include: "rules/report.smk"
include: "rules/practitioner.smk"


onstart:
    # One run at a time per results_dir, whatever folder it was started from (docs/workflow.md,
    # "Safe reruns"): the lock is taken once the DAG is known, before the first job.
    try:
        take_results_lock(RESULTS)
    except ConfigError as exc:
        raise WorkflowError(str(exc)) from None


onsuccess:
    release_results_lock(RESULTS)
    # Practitioner mode: say which labels files the runs wait for (nothing when none does).
    for line in waiting_for_labels():
        print(f"tavaal: {line}")


onerror:
    release_results_lock(RESULTS)


# Cheap rules run on the submitting node under a cluster profile; prepare_dataset too, since
# downloads need the network that compute nodes often lack.
localrules:
    all_figures,
    all,
    prepare_dataset,
    aggregate,
    figure_accuracy,
    figure_improvement,
    figure_class_entropy,
    figure_discriminator_histogram,
    figure_selection,
    figure_adversary_map,
    table_selection_geometry,
    diagnostics,
    tables,
    table_sampling_time,
    table_adversarial_health,
    readme_results,
    study,
    plain_retraining,
    table_plain_retraining,
    table_oracle_errors,
    take_initial_labels,
    initial_labels,
    take_labels,
    export_labels,
