"""Saving a labels file that someone else may have edited: its stamp and a three-way merge.

Before each save the labeling page compares the file on disk with the `FileStamp` of what it last
read or wrote; when it changed, `merge_labels` keeps every label the page did not write, and a
row both changed differently keeps the file's value and is reported as a `Conflict`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class FileStamp:
    """What the labels file looked like: a change of any part means someone else wrote it."""

    mtime_ns: int
    size: int
    sha256: str


@dataclass(frozen=True)
class Conflict:
    """One row that the page and another editor changed differently since the page's last save."""

    sample_id: int
    row: int
    page: str  # the label the person chose on the page ("" = cleared)
    file: str  # the label the file has now, and keeps


@dataclass(frozen=True)
class Saved:
    labels: dict[int, str]  # the labels in the file after the save
    conflicts: tuple[Conflict, ...]


def merge_labels(
    base: Mapping[int, str], ours: Mapping[int, str], theirs: Mapping[int, str]
) -> tuple[dict[int, str], list[int]]:
    """Three-way merge of {sample_id: label}: `base` what the page last read or wrote, `ours`
    the page's labels now, `theirs` the file now. Returns the merged labels and the ids both
    sides changed differently; those keep `theirs` (the file's value) until the person chooses
    again, so a label the page did not write is never dropped."""
    merged: dict[int, str] = {}
    conflicts = []
    for sample_id in sorted({*base, *ours, *theirs}):
        was, page, file = (
            base.get(sample_id, ""),
            ours.get(sample_id, ""),
            theirs.get(sample_id, ""),
        )
        if page in (was, file):
            value = file
        elif file == was:
            value = page
        else:
            value = file
            conflicts.append(sample_id)
        if value:
            merged[sample_id] = value
    return merged, conflicts


def stamp_of(status: os.stat_result, data: bytes) -> FileStamp:
    return FileStamp(status.st_mtime_ns, status.st_size, hashlib.sha256(data).hexdigest())
