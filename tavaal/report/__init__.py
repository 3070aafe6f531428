"""Aggregation, statistics, tables and figures of finished experiments.

One module per concern:

- `summary`: the per-stage files of one experiment -> summary.parquet, one row per (method,
  seed, stage);
- `score`: the experiment's headline score (test accuracy, or mIoU for segmentation) and its
  names in tables and figures;
- `statistics`: learning curves, paired differences by seed, t intervals, area under the
  learning curve: the one place every table and figure takes its numbers from;
- `tables`: the tables of one experiment;
- `plain_retraining`: each method's own task learner against a plain classifier retrained on
  its labeled sets (TA-VAAL §6.1);
- `table_files`: tables as csv, markdown and self-contained html files;
- `figures`: learning curves, selected samples, the adversarial part;
- `style`: method names, colours and order;
- `readme`: the generated results sections (docs/results/), rendered from a run's files, and
  their splice.

The workflow scripts and the tests import what they use from here.
"""

from tavaal.report.figures.adversarial import (
    discriminator_histogram_figure,
    loss_likelihood_frames,
    plot_discriminator_histogram,
    plot_loss_vs_likelihood,
)
from tavaal.report.figures.adversary_map import plot_adversary_map
from tavaal.report.figures.common import save_figure
from tavaal.report.figures.curves import plot_accuracy, plot_improvement
from tavaal.report.figures.selection import (
    SelectionPanel,
    plot_class_entropy,
    plot_selection,
    selection_figure,
)
from tavaal.report.plain_retraining import (
    plain_retraining_display,
    plain_retraining_table,
    plot_plain_retraining,
    read_retraining,
)
from tavaal.report.score import ACCURACY, MIOU, Score, score_of
from tavaal.report.selection_geometry import selection_geometry, summarise_geometry
from tavaal.report.statistics import (
    area_under_curve,
    improvement_curves,
    learning_curves,
    loss_likelihood_correlation,
    paired_differences,
    t_interval,
    unlabeled_likelihood,
)
from tavaal.report.style import method_color, method_label, method_order
from tavaal.report.summary import (
    aggregate_experiment,
    build_summary,
    read_summary,
    write_summary,
)
from tavaal.report.table_files import accuracy_display, html_table, markdown_table, write_table
from tavaal.report.tables import (
    accuracy_table,
    adversarial_health_table,
    aulc_table,
    default_targets,
    labels_to_reach,
    loss_likelihood_table,
    oracle_errors_table,
    sampling_time_table,
)

__all__ = [
    "ACCURACY",
    "MIOU",
    "Score",
    "score_of",
    "SelectionPanel",
    "accuracy_display",
    "accuracy_table",
    "adversarial_health_table",
    "aggregate_experiment",
    "area_under_curve",
    "aulc_table",
    "build_summary",
    "default_targets",
    "discriminator_histogram_figure",
    "improvement_curves",
    "html_table",
    "labels_to_reach",
    "learning_curves",
    "loss_likelihood_correlation",
    "unlabeled_likelihood",
    "loss_likelihood_frames",
    "loss_likelihood_table",
    "markdown_table",
    "method_color",
    "method_label",
    "method_order",
    "oracle_errors_table",
    "paired_differences",
    "plain_retraining_display",
    "plain_retraining_table",
    "plot_accuracy",
    "plot_adversary_map",
    "plot_class_entropy",
    "plot_discriminator_histogram",
    "plot_improvement",
    "plot_loss_vs_likelihood",
    "plot_plain_retraining",
    "plot_selection",
    "read_retraining",
    "read_summary",
    "sampling_time_table",
    "save_figure",
    "selection_figure",
    "selection_geometry",
    "summarise_geometry",
    "t_interval",
    "write_summary",
    "write_table",
]
