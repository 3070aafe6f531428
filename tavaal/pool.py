"""Index files: which train-split samples are labeled, when, by which score, with what label.

`labeled.parquet` has one row per labeled sample (index, label, stage_added, score) and records
in its metadata who produced it. Every read goes through `read_labeled`, which checks the
invariants and names the file and the problem when one is broken.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tavaal import __version__
from tavaal.atomic import atomic_write
from tavaal.data import class_count_entropy as entropy_of_counts
from tavaal.errors import IndexFileError
from tavaal.seeding import numpy_rng

if TYPE_CHECKING:
    # pandas is imported where a table is built: a training job reads its labeled set without it.
    import pandas as pd

LABELED_SCHEMA = pa.schema(
    [
        pa.field("index", pa.int64(), nullable=False),
        pa.field("label", pa.int64(), nullable=False),
        pa.field("stage_added", pa.int32(), nullable=False),
        pa.field("score", pa.float64(), nullable=True),
    ]
)
METADATA_KEYS = ("experiment", "method", "seed", "stage", "settings_hash", "tavaal_version")
# The method the shared initial pool (stage 0, `tavaal.layout`) names: every method's.
ALL_METHODS = "*"


@dataclass
class LabeledSet:
    """A read (and checked) labeled index file: its rows as an Arrow table and its metadata."""

    arrow: pa.Table
    metadata: dict[str, str]

    @cached_property
    def table(self) -> pd.DataFrame:
        """The rows as a pandas DataFrame (pandas is imported on first use)."""
        return self.arrow.to_pandas()

    @property
    def indices(self) -> np.ndarray:
        return _column(self.arrow, "index", np.int64)

    @property
    def labels(self) -> np.ndarray:
        return _column(self.arrow, "label", np.int64)

    @property
    def stage(self) -> int:
        return int(self.metadata["stage"])


def oracle_labels(y_train: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """The labels of `indices` in a per-sample label table (true labels or an oracle's)."""
    return np.asarray(y_train[np.asarray(indices, dtype=np.int64)], dtype=np.int64)


def validation_indices(n_train: int, size: int, seed: int) -> np.ndarray:
    """The held-out validation split of `train.validation_size` (sorted; empty when 0).

    A function of (dataset size, size, seed) only; its samples are never labeled or queried.
    """
    if size >= n_train:
        raise IndexFileError(f"validation split of {size} leaves none of the {n_train} samples")
    if size == 0:
        return np.zeros(0, dtype=np.int64)
    rng = numpy_rng(seed, None, "validation")
    return np.sort(rng.choice(n_train, size=size, replace=False)).astype(np.int64)


def initial_indices(
    n_train: int, size: int, seed: int, excluded: np.ndarray | None = None
) -> np.ndarray:
    """The initial labeled pool: a function of (dataset size, size, seed, excluded) only.

    It does not depend on the method, so every method starts from the same labeled set and
    differences between methods are paired by seed. `excluded` (the validation split) is never
    drawn; without it the draw equals a draw from range(n_train).
    """
    available = np.arange(n_train, dtype=np.int64)
    if excluded is not None:
        available = np.setdiff1d(available, np.asarray(excluded, dtype=np.int64))
    if size > len(available):
        raise IndexFileError(
            f"initial pool of {size} exceeds the {len(available)} available training samples"
        )
    rng = numpy_rng(seed, None, "initial_pool")
    return np.sort(rng.choice(available, size=size, replace=False)).astype(np.int64)


def excluded_initial_classes(num_classes: int, count: int, seed: int) -> np.ndarray:
    """The `count` classes a biased initial pool leaves out (VAAL §5.2), drawn per seed."""
    if count >= num_classes:
        raise IndexFileError(
            f"initial_excluded_classes {count} leaves none of the {num_classes} classes"
        )
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    rng = numpy_rng(seed, None, "initial_pool/excluded_classes")
    return np.sort(rng.choice(num_classes, size=count, replace=False)).astype(np.int64)


def candidate_subset(unlabeled: np.ndarray, size: int, seed: int, stage: int) -> np.ndarray:
    """Random subset of the unlabeled pool scored at a query (the whole pool if it is smaller).

    Drawn without replacement and from (seed, stage) only, so every method at a stage scores the
    same candidates (TA-VAAL §3.3 / Learning Loss "subset method").
    """
    unlabeled = np.asarray(unlabeled, dtype=np.int64)
    if size <= 0 or size >= len(unlabeled):
        return unlabeled.copy()
    rng = numpy_rng(seed, stage, "candidate_subset")
    return np.sort(rng.choice(unlabeled, size=size, replace=False))


def make_table(
    indices: np.ndarray, labels: np.ndarray, stage_added: np.ndarray | int, scores=None
) -> pd.DataFrame:
    import pandas as pd

    indices = np.asarray(indices, dtype=np.int64)
    stage_added = np.broadcast_to(np.asarray(stage_added, dtype=np.int32), indices.shape)
    score = (
        np.full(len(indices), np.nan) if scores is None else np.asarray(scores, dtype=np.float64)
    )
    return pd.DataFrame(
        {
            "index": indices,
            "label": np.asarray(labels, dtype=np.int64),
            "stage_added": stage_added.astype(np.int32),
            "score": score,
        }
    )


def write_labeled(path: Path, table: pd.DataFrame, metadata: dict) -> None:
    """Write atomically: a killed job leaves either the old file or none, never a partial one."""
    missing = [key for key in METADATA_KEYS if key != "tavaal_version" and key not in metadata]
    if missing:
        raise ValueError(f"labeled metadata lacks {missing}")
    table = table.sort_values("index", kind="stable").reset_index(drop=True)
    arrays = [
        pa.array(table["index"].to_numpy(np.int64), pa.int64()),
        pa.array(table["label"].to_numpy(np.int64), pa.int64()),
        pa.array(table["stage_added"].to_numpy(np.int32), pa.int32()),
        pa.array(table["score"].to_numpy(np.float64), pa.float64(), from_pandas=True),
    ]
    meta = {key: str(value) for key, value in metadata.items()}
    meta["tavaal_version"] = __version__
    schema = LABELED_SCHEMA.with_metadata({k: v for k, v in sorted(meta.items())})
    _write_atomic(path, pa.Table.from_arrays(arrays, schema=schema))


def write_scores(path: Path, table: pd.DataFrame, metadata: dict) -> None:
    meta = {}
    for key, value in metadata.items():
        meta[key] = json.dumps(value, sort_keys=True) if isinstance(value, dict) else str(value)
    meta["tavaal_version"] = __version__
    arrow = pa.Table.from_pandas(table.reset_index(drop=True), preserve_index=False)
    arrow = arrow.replace_schema_metadata(dict(sorted(meta.items())))
    _write_atomic(path, arrow)


def _write_atomic(path: Path, table: pa.Table) -> None:
    with atomic_write(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def _read_arrow(path: Path) -> pa.Table:
    path = Path(path)
    if not path.exists():
        raise IndexFileError(f"{path}: index file not found")
    try:
        # One file, read directly: pq.read_table goes through pyarrow.dataset, which imports
        # pandas (~0.5 s) even where no DataFrame is wanted (a training job). Same table.
        with pq.ParquetFile(path) as handle:
            return handle.read()
    except Exception as exc:
        raise IndexFileError(f"{path}: truncated or corrupt parquet file ({exc})") from None


def read_labeled(
    path: Path,
    y_train: np.ndarray | None = None,
    expected_stage: int | None = None,
    expected: dict | None = None,
) -> LabeledSet:
    """Read and validate a labeled index file.

    `y_train`: what the oracle says for every train sample (`tavaal.oracle`; the true labels for
    the ideal oracle). Checks: the columns and types, duplicates, indices outside the train split
    (which is also how test-split indices are caught: they are not positions of the train split),
    labels that differ from the oracle's, `stage_added` beyond the file's stage, the stage
    itself, and any metadata the caller expects (experiment, method, seed).
    """
    path = Path(path)
    arrow = _read_arrow(path)
    names = [field.name for field in LABELED_SCHEMA]
    if arrow.schema.names != names:
        raise IndexFileError(f"{path}: columns {arrow.schema.names}, expected {names}")
    raw_meta = arrow.schema.metadata or {}
    metadata = {k.decode(): v.decode() for k, v in raw_meta.items() if not k.startswith(b"pandas")}
    for key in METADATA_KEYS:
        if key not in metadata:
            raise IndexFileError(f"{path}: metadata key {key!r} is missing")
    if any(arrow.column(name).null_count for name in ("index", "label", "stage_added")):
        raise IndexFileError(f"{path}: null values in index/label/stage_added")
    indices = _column(arrow, "index", np.int64)
    _, first = np.unique(indices, return_index=True)
    if len(first) < len(indices):
        repeated = np.ones(len(indices), dtype=bool)
        repeated[first] = False
        raise IndexFileError(f"{path}: index {indices[repeated][0]} appears twice")
    stage = _int_meta(path, metadata, "stage")
    if expected_stage is not None and stage != expected_stage:
        raise IndexFileError(f"{path}: file is for stage {stage}, expected stage {expected_stage}")
    stages = _column(arrow, "stage_added", np.int64)
    if len(stages) and (stages.min() < 0 or stages.max() > stage):
        raise IndexFileError(f"{path}: stage_added outside 0..{stage}")
    for key, value in (expected or {}).items():
        if metadata.get(key) != str(value):
            raise IndexFileError(
                f"{path}: metadata {key}={metadata.get(key)!r}, expected {str(value)!r}"
            )
    if y_train is not None:
        n_train = len(y_train)
        bad = (indices < 0) | (indices >= n_train)
        if bad.any():
            raise IndexFileError(
                f"{path}: index {indices[bad][0]} is outside the train split (0..{n_train - 1})"
            )
        truth = oracle_labels(y_train, indices)
        labels = _column(arrow, "label", np.int64)
        wrong = truth != labels
        if wrong.any():
            i = int(np.flatnonzero(wrong)[0])
            raise IndexFileError(
                f"{path}: index {indices[i]} has label {labels[i]}, the oracle says {truth[i]}"
            )
    return LabeledSet(arrow=arrow, metadata=metadata)


def _column(arrow: pa.Table, name: str, dtype) -> np.ndarray:
    """A null-free column as a numpy array of `dtype`. Through Python ints: pyarrow's to_numpy
    imports pandas, which a training job otherwise never needs (index files are small)."""
    return np.array(arrow.column(name).to_pylist(), dtype=dtype)


def read_scores(path: Path) -> tuple[pd.DataFrame, dict]:
    arrow = _read_arrow(Path(path))
    metadata: dict = {}
    for key, value in (arrow.schema.metadata or {}).items():
        key = key.decode()
        if key.startswith("pandas"):
            continue
        value = value.decode()
        if key == "diagnostics":
            metadata[key] = json.loads(value)
        elif key == "query_seconds":
            metadata[key] = float(value)
        else:
            metadata[key] = value
    return arrow.to_pandas(), metadata


def _int_meta(path: Path, metadata: dict, key: str) -> int:
    try:
        return int(metadata[key])
    except ValueError:
        raise IndexFileError(
            f"{path}: metadata {key}={metadata[key]!r} is not an integer"
        ) from None


def class_count_entropy(labels: np.ndarray, num_classes: int) -> float:
    """Entropy (natural log) of the class histogram of `labels` (TA-VAAL Fig. 7a)."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)
    return entropy_of_counts(counts)
