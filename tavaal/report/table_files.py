"""Tables as files: csv for programs, markdown for GitHub and the README, and a self-contained
html page, which is what `snakemake --report` can show (it offers csv files only as downloads)."""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np
import pandas as pd

from tavaal.report.style import method_label

STYLE = (
    "body{font-family:system-ui,sans-serif;margin:1em;color:#222}"
    "h2{font-size:1.1em}"
    "table{border-collapse:collapse;font-size:0.9em}"
    "th,td{border:1px solid #ccc;padding:0.25em 0.6em;text-align:right;white-space:nowrap}"
    "th{background:#f0f0f0}"
    "th:first-child,td:first-child{text-align:left}"
    "tbody tr:nth-child(even){background:#fafafa}"
)


def format_cell(value) -> str:
    """What a reader sees in a cell: floats to 4 significant digits, missing values as "—"."""
    if value is None or (isinstance(value, float | np.floating) and math.isnan(value)):
        return "—"
    if isinstance(value, float | np.floating):
        return f"{value:.4g}"
    return str(value)


def markdown_table(frame: pd.DataFrame) -> str:
    """GitHub-flavoured markdown; NaN shown as an em dash."""
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = [
        "| " + " | ".join(map(format_cell, row)) + " |" for row in frame.itertuples(index=False)
    ]
    return "\n".join([header, rule, *body]) + "\n"


def html_table(frame: pd.DataFrame, title: str | None = None) -> str:
    """A whole html page holding the table (its own style, nothing loaded from elsewhere)."""
    head = "".join(f"<th>{html.escape(str(column))}</th>" for column in frame.columns)
    rows = "\n".join(
        "<tr>" + "".join(f"<td>{html.escape(format_cell(value))}</td>" for value in row) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    heading = f"<h2>{html.escape(title)}</h2>\n" if title else ""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title or 'table')}</title>\n<style>{STYLE}</style>\n</head>\n"
        f"<body>\n{heading}<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{rows}\n</tbody>\n"
        "</table>\n</body>\n</html>\n"
    )


def write_table(
    frame: pd.DataFrame,
    csv_path: str | Path,
    md_path: str | Path,
    html_path: str | Path,
    display: pd.DataFrame | None = None,
    title: str | None = None,
) -> None:
    """The frame as csv; `display` (default: the frame) as markdown and as an html page."""
    for path in (csv_path, md_path, html_path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(csv_path, index=False, float_format="%.6g")
    shown = frame if display is None else display
    Path(md_path).write_text((f"## {title}\n\n" if title else "") + markdown_table(shown))
    Path(html_path).write_text(html_table(shown, title))


def accuracy_display(table: pd.DataFrame) -> pd.DataFrame:
    """`accuracy_table` as labels x methods, the score (test accuracy, or mIoU) in percent
    "mean ± std" with the paired difference to the baseline in brackets."""
    means = [c for c in table if c.endswith("_mean") and c != "diff_mean"]
    column = means[0].removesuffix("_mean")
    wide = {}
    for row in table.to_dict("records"):
        text = f"{100 * row[f'{column}_mean']:.1f} ± {_percent(row[f'{column}_std'])}"
        if not math.isnan(row["diff_mean"]) and row["diff_mean"] != 0:
            text += f" ({signed(100 * row['diff_mean'], 1)})"
        wide.setdefault(int(row["labels"]), {})[method_label(row["method"])] = text
    return pd.DataFrame.from_dict(wide, orient="index").rename_axis("labels").reset_index()


def signed(value: float, digits: int) -> str:
    """+0.165 / −0.013: always a sign, and a true minus; "—" when missing."""
    if math.isnan(value):
        return "—"
    # + 0.0 turns a -0.0 (or what rounds to it) into 0.0, which prints as "+0.0", not "−0.0".
    return f"{round(value, digits) + 0.0:+.{digits}f}".replace("-", "−")


def _percent(value: float) -> str:
    return "—" if math.isnan(value) else f"{100 * value:.1f}"
