"""Fixed-size stratified splits of datasets that come without one (Caltech, ImageNet's hold-out)."""

from __future__ import annotations

import numpy as np


def per_class_test_counts(class_sizes: np.ndarray, n_test: int) -> np.ndarray:
    """Test images per class: `n_test` apportioned in proportion to `class_sizes` by largest
    remainders (ties to the lower class index); the sum is exactly `n_test`."""
    sizes = np.asarray(class_sizes, dtype=np.int64)
    total = int(sizes.sum())
    if not 0 <= n_test <= total:
        raise ValueError(f"cannot draw {n_test} test images from {total}")
    if total == 0:
        return np.zeros_like(sizes)
    counts = sizes * n_test // total
    remainders = sizes * n_test % total
    extra = n_test - int(counts.sum())
    order = sorted(range(len(sizes)), key=lambda c: (-remainders[c], c))
    counts[order[:extra]] += 1
    return counts


def split_indices(labels: np.ndarray, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, test) positions of a stratified split with exactly `n_test` test samples
    (`per_class_test_counts`, a seeded random choice within each class)."""
    labels = np.asarray(labels)
    num_classes = int(labels.max()) + 1 if labels.size else 0
    counts = per_class_test_counts(np.bincount(labels, minlength=num_classes), n_test)
    rng = np.random.default_rng(seed)
    test = np.zeros(labels.size, dtype=bool)
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        test[rng.permutation(members)[: counts[c]]] = True
    return np.flatnonzero(~test), np.flatnonzero(test)
