"""A user-supplied embedding of the train split (`embedding.source: file`): a .npy array with
one row per train sample, in the prepared dataset's order, such as the features of a pretrained
network. Read memory-mapped, never unpickled; every problem is one ConfigError naming the key
and the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tavaal.errors import ConfigError

# Rows scanned for NaN / infinity at once: memory O(SCAN_ROWS * E).
SCAN_ROWS = 65536


def read_embedding_file(path: str | Path, n_rows: int | None, key: str) -> np.ndarray:
    """The (n_rows, E) array in `path`, memory-mapped; `n_rows` None checks all but the count.
    Raises a ConfigError naming `key` and the file when it cannot be read, is not a 2-D array
    of real numbers, has another number of rows, or holds NaN or infinite values (the first
    such row is named)."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{key}: {path}: not a readable .npy array ({exc})") from None
    if not isinstance(array, np.ndarray):
        raise ConfigError(f"{key}: {path}: an .npz archive; one .npy array is expected")
    if array.ndim != 2 or array.shape[1] < 1:
        raise ConfigError(
            f"{key}: {path}: need a 2-D array (one row per train sample), got shape "
            f"{tuple(array.shape)}"
        )
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ConfigError(f"{key}: {path}: need real numbers, got dtype {array.dtype}")
    if n_rows is not None and array.shape[0] != n_rows:
        raise ConfigError(
            f"{key}: {path}: {array.shape[0]} rows, but the train split has {n_rows} samples "
            "(one row per sample, in the prepared dataset's order)"
        )
    for start in range(0, array.shape[0], SCAN_ROWS):
        bad = ~np.isfinite(np.asarray(array[start : start + SCAN_ROWS], dtype=np.float64))
        if bad.any():
            row = start + int(np.flatnonzero(bad.any(axis=1))[0])
            raise ConfigError(f"{key}: {path}: row {row} holds NaN or infinite values")
    return array
