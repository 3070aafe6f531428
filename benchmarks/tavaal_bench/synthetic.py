"""Synthetic CIFAR-shaped data: uniform-noise uint8 images with random labels (the numbers do not
depend on the pixel values)."""

from __future__ import annotations

import numpy as np

from tavaal.data import DatasetInfo, PreparedDataset

from .settings import Profile


def synthetic_dataset(
    profile: Profile, n_train: int, n_test: int, seed: int, role: str
) -> PreparedDataset:
    """An in-memory PreparedDataset of uniform-noise uint8 images with random labels."""
    rng = np.random.default_rng([seed, sum(role.encode())])
    c, h, w = profile.input_shape
    info = DatasetInfo(
        name=f"synthetic-{profile.dataset}",
        kind="image",
        num_classes=profile.num_classes,
        classes=tuple(str(k) for k in range(profile.num_classes)),
        input_shape=profile.input_shape,
        mean=profile.mean,
        std=profile.std,
        n_train=n_train,
        n_test=n_test,
    )
    return PreparedDataset(
        info=info,
        x_train=rng.integers(0, 256, (n_train, h, w, c), dtype=np.uint8),
        y_train=rng.integers(0, profile.num_classes, n_train).astype(np.int64),
        x_test=rng.integers(0, 256, (n_test, h, w, c), dtype=np.uint8),
        y_test=rng.integers(0, profile.num_classes, n_test).astype(np.int64),
    )
