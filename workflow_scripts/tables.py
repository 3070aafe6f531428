"""Rule tables: accuracy per stage, AULC with paired-seed CI, labels needed to reach accuracies."""

from tavaal import report
from tavaal.stage import workflow_job

# Set by the script preamble that Snakemake puts in front of this file.
snakemake = globals()["snakemake"]

with workflow_job(snakemake.log[0]) as log:
    summary = report.read_summary(snakemake.input[0])
    baseline, out = snakemake.params.baseline, snakemake.output
    accuracy = report.accuracy_table(summary, baseline)
    report.write_table(
        accuracy,
        out.accuracy_csv,
        out.accuracy_md,
        out.accuracy_html,
        display=report.accuracy_display(accuracy),
        title="Test accuracy (%), mean ± std over seeds (paired difference to the baseline)",
    )
    aulc = report.aulc_table(summary, baseline, snakemake.params.confidence)
    report.write_table(
        aulc,
        out.aulc_csv,
        out.aulc_md,
        out.aulc_html,
        title=f"Area under the learning curve, difference to {baseline} paired by seed",
    )
    targets = snakemake.params.targets or report.default_targets(summary, baseline)
    reach = report.labels_to_reach(summary, targets, baseline)
    report.write_table(
        reach, out.reach_csv, out.reach_md, out.reach_html, title="Labels needed to reach"
    )
    log(f"tables for {len(accuracy)} (method, stage) rows, {len(targets)} accuracy targets")
