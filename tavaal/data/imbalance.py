"""One mechanism for every imbalanced variant: subsample the train split per class.

`subsample_per_class` keeps, for each class, a uniformly random subset of the requested size
(or all of the class when fewer are available). The subset of class ``c`` is a prefix of a
permutation that depends only on ``(seed, c)``, so

* the result is the same on every run (fixed seed), and
* variants built with the same seed are nested: asking for fewer samples of a class keeps a
  subset of what a larger request keeps (e.g. CIFAR-10 x100 is inside CIFAR-10 x10, and the
  three entropy variants share their first four classes, as in TA-VAAL arXiv §5.2, where the
  first four classes were reduced once and further images removed from that).

Test splits are never subsampled: accuracy is measured on the balanced test sets.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from tavaal.data.registry import Splits


def subsample_per_class(labels: np.ndarray, counts: Mapping[int, int], seed: int) -> np.ndarray:
    """Indices (sorted, int64) keeping ``min(counts[c], available)`` samples of each class ``c``.

    Classes absent from `counts` are kept whole.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {labels.shape}")
    for cls, count in counts.items():
        if int(count) < 0:
            raise ValueError(f"class {cls}: negative target count {count}")
    keep = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        if int(cls) in counts:
            count = min(int(counts[int(cls)]), members.size)
            # Per-class generator: class c's choice ignores the other classes' counts (nesting).
            rng = np.random.default_rng([seed, int(cls)])
            members = members[rng.permutation(members.size)[:count]]
        keep.append(members)
    if not keep:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(keep)).astype(np.int64)


def ratio_counts(labels: np.ndarray, classes: Iterable[int], ratio: float) -> dict[int, int]:
    """Target counts that reduce each of `classes` to `ratio` of its size.

    Rounded half up and never below one sample, so a class is reduced but never removed.
    """
    labels = np.asarray(labels)
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")
    counts = {}
    for cls in classes:
        available = int(np.count_nonzero(labels == cls))
        counts[int(cls)] = max(1, math.floor(available * ratio + 0.5))
    return counts


def imbalance_train(splits: Splits, counts: Mapping[int, int], seed: int) -> Splits:
    """`splits` with its train split subsampled to `counts`; the test split is untouched."""
    keep = subsample_per_class(splits.y_train, counts, seed)
    # replace() keeps everything else, the test split and the provenance included.
    return dataclasses.replace(splits, x_train=splits.x_train[keep], y_train=splits.y_train[keep])


def class_count_entropy(counts: Sequence[float] | np.ndarray) -> float:
    """Entropy (natural log, nats) of the class distribution given by per-class counts.

    TA-VAAL's "data class count entropy" (arXiv §5.2, CVPR Fig. 7a); zero counts contribute 0.
    """
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        return 0.0
    p = counts[counts > 0] / total
    return float(-(p * np.log(p)).sum())
