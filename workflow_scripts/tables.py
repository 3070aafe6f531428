"""Rule tables: the score (accuracy, or mIoU) per stage, AULC with paired-seed CI, labels needed
to reach scores."""

from tavaal import report
from tavaal.stage import workflow_job

# Set by the script preamble that Snakemake puts in front of this file.
snakemake = globals()["snakemake"]

with workflow_job(snakemake.log[0]) as log:
    summary = report.read_summary(snakemake.input[0])
    baseline, out = snakemake.params.baseline, snakemake.output
    score = report.score_of(summary)
    accuracy = report.accuracy_table(summary, baseline)
    report.write_table(
        accuracy,
        out.accuracy_csv,
        out.accuracy_md,
        out.accuracy_html,
        display=report.accuracy_display(accuracy),
        title=f"Test {score.name} (%), mean ± std over seeds (paired difference to the baseline)",
    )
    aulc = report.aulc_table(summary, baseline, snakemake.params.confidence)
    report.write_table(
        aulc,
        out.aulc_csv,
        out.aulc_md,
        out.aulc_html,
        title=f"Area under the {score.name} curve, difference to {baseline} paired by seed",
    )
    targets = snakemake.params.targets or report.default_targets(summary, baseline)
    reach = report.labels_to_reach(summary, targets, baseline)
    report.write_table(
        reach,
        out.reach_csv,
        out.reach_md,
        out.reach_html,
        title=f"Labels needed to reach a test {score.name}",
    )
    log(f"tables for {len(accuracy)} (method, stage) rows, {len(targets)} {score.name} targets")
